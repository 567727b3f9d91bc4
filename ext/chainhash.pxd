# cython: language_level=3
"""SHA-256 then base32 (RFC 4648, upper case, with padding), in C: what
hashlib.sha256(...).digest() and base64.b32encode(...) give in Python,
without a Python call per name. Chain names hash a service port (and an
endpoint) this way, tens of thousands of times per full compile.

Header-only, like textbuf.pxd. It uses OpenSSL's libcrypto, the library
Python's hashlib uses, through EVP with one digest context kept per
module: OpenSSL 3's one-shot SHA256() fetches the algorithm on every call
(540 ns here, against 130 ns with the context reused).
"""
cdef extern from "openssl/evp.h":
    ctypedef struct EVP_MD
    ctypedef struct EVP_MD_CTX
    EVP_MD* EVP_MD_fetch(void* libctx, const char* algorithm, const char* properties)
    EVP_MD_CTX* EVP_MD_CTX_new()
    int EVP_DigestInit_ex(EVP_MD_CTX* ctx, const EVP_MD* md, void* engine) nogil
    int EVP_DigestUpdate(EVP_MD_CTX* ctx, const void* data, size_t n) nogil
    int EVP_DigestFinal_ex(EVP_MD_CTX* ctx, unsigned char* md, unsigned int* n) nogil


cdef struct Hasher:
    EVP_MD* md
    EVP_MD_CTX* ctx


cdef inline int hasher_init(Hasher* h) except -1:
    """Once per module, at import; the context lives as long as the module."""
    h.md = EVP_MD_fetch(NULL, b"SHA256", NULL)
    h.ctx = EVP_MD_CTX_new()
    if h.md == NULL or h.ctx == NULL:
        raise RuntimeError("libcrypto has no SHA-256")
    return 0


cdef inline void b32(const unsigned char* data, Py_ssize_t n, char* out, Py_ssize_t chars) noexcept nogil:
    """The first `chars` characters of the base32 encoding of data[:n]
    (padding '=' included where the encoding has it)."""
    cdef const char* alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    cdef Py_ssize_t i = 0, bit, byte, total = ((n + 4) // 5) * 8
    cdef Py_ssize_t used = (n * 8 + 4) // 5          # characters that carry data
    cdef unsigned int v
    while i < chars and i < total:
        if i < used:
            bit = i * 5
            byte = bit // 8
            v = data[byte] << 8
            if byte + 1 < n:
                v |= data[byte + 1]
            out[i] = alphabet[(v >> (11 - bit % 8)) & 31]
        else:
            out[i] = b'='
        i += 1


cdef inline int sha256_b32(Hasher* h, const char* text, Py_ssize_t n, char* out, Py_ssize_t chars) except -1 nogil:
    """base32(sha256(text))[:chars]; chars <= 56."""
    cdef unsigned char digest[32]
    cdef unsigned int size
    if (EVP_DigestInit_ex(h.ctx, h.md, NULL) != 1 or EVP_DigestUpdate(h.ctx, text, n) != 1
            or EVP_DigestFinal_ex(h.ctx, digest, &size) != 1):
        with gil:
            raise RuntimeError("SHA-256 failed in libcrypto")
    b32(digest, 32, out, chars)
    return 0
