# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of port_rules() in netplane/proxy/iptables/rules.py.

Read that module for what the rules mean; this one only makes them fast,
and must give byte-identical PortRules for every input. Like it, it only
formats the PortPolicy (policy.py made every decision), and it takes every
chain name and prefix from chains.py. The differences are of cost, not of
content:
- the model is read from its slots (slots.pxd), and a port's own texts
  (its name, its match, its addresses) are written once into a C arena,
  not made into Python strings;
- the rules are written into reused C buffers, and the only Python objects
  made are the PortRules and its texts: four per port in the common case;
- an endpoint is a C struct (its address borrowed from the model, its
  port a C long, its SEP chain name in a char array);
- chain names come from SHA-256 and base32 in C (chainhash.pxd), one
  digest per port for its SVC/SVL/EXT/FW chains and one per endpoint that
  has a SEP chain or an affinity list;
- the node's Context is read once per Context object, not once per port;
- endpoints are matched to their names by identity within the port, as
  the policy hands out the same objects in its cluster, local, reachable
  and hairpin tuples (an equal but distinct object gets its own,
  identical, name).
"""
from cpython.mem cimport PyMem_Realloc
from cpython.ref cimport PyObject
from libc.string cimport memcpy
from chainhash cimport Hasher, hasher_init, sha256_b32
from slots cimport Field, field, field_init
from textbuf cimport Buf, buf_init, buf_reset, put, put_c, put_i, put_s, take

import netaddr
import netaddr.strategy.ipv4

from netplane.proxy.iptables import chains as c
from netplane.proxy.iptables.rules import COMPACT, PortRules
from netplane.proxy.model import Endpoint, ServicePort
from netplane.proxy.policy import REJECT, PortPolicy

cdef extern from "Python.h":
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* ptype) except NULL
    void PyMem_Free(void* p)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    bint PyUnicode_IS_ASCII(object)

DEF HASH_CHARS = 16
DEF NAME_CHARS = 23             # "NP-SVC-" (or SVL, EXT, SEP) and the hash; FW's is one shorter
# the names, from chains.py; the fixed sizes above are checked against them here
assert c.HASH_CHARS == HASH_CHARS and all(len(p) + HASH_CHARS == NAME_CHARS for p in (c.SVC, c.SVL, c.EXT, c.SEP))
assert len(c.FW) + HASH_CHARS == NAME_CHARS - 1
cdef bytes _SVC = c.SVC.encode(), _SVL = c.SVL.encode(), _EXT = c.EXT.encode(), _FW = c.FW.encode()
cdef bytes _SEP = c.SEP.encode()
cdef bytes _NAT_SERVICES = c.NAT_SERVICES.encode(), _NAT_NODEPORTS = c.NAT_NODEPORTS.encode()
cdef bytes _FILTER_SERVICES = c.FILTER_SERVICES.encode(), _FILTER_EXTERNAL = c.FILTER_EXTERNAL.encode()
cdef bytes _FILTER_FIREWALL = c.FILTER_FIREWALL.encode(), _MARK_MASQ = c.MARK_MASQ.encode()

cdef Hasher _hasher
hasher_init(&_hasher)
cdef Buf _out, _decl, _rules    # a share of a top-level chain; the port's declarations; its chains' rules
cdef Buf _arena                 # the port's own texts (Text points into it)
cdef Buf _scratch               # hash input
buf_init(&_out, 1 << 12)
buf_init(&_decl, 1 << 12)
buf_init(&_rules, 1 << 16)
buf_init(&_arena, 1 << 10)
buf_init(&_scratch, 512)


# -- where the model's fields sit --------------------------------------------------

cdef list _names = []           # keeps the fields' name strings alive
cdef Field POL_PORT, POL_CLUSTER, POL_LOCAL, POL_REACHABLE, POL_INTERNAL, POL_EXTERNAL, POL_HAS_ANY, POL_REFUSAL
cdef Field POL_FIREWALL, POL_HAIRPIN
cdef Field PORT_NAME, PORT_PROTOCOL, PORT_NUMBER, PORT_CLUSTER_IPS, PORT_NODE_PORT, PORT_EXTERNAL_IPS, PORT_LB_IPS
cdef Field PORT_AFFINITY, PORT_EXTERNAL_LOCAL, PORT_INTERNAL_LOCAL
cdef Field EP_ADDRESS, EP_PORT
cdef Field IP_VALUE, IP_MODULE
field_init(&POL_PORT, PortPolicy, "port", _names)
field_init(&POL_CLUSTER, PortPolicy, "cluster", _names)
field_init(&POL_LOCAL, PortPolicy, "local", _names)
field_init(&POL_REACHABLE, PortPolicy, "reachable", _names)
field_init(&POL_INTERNAL, PortPolicy, "internal", _names)
field_init(&POL_EXTERNAL, PortPolicy, "external", _names)
field_init(&POL_HAS_ANY, PortPolicy, "has_any", _names)
field_init(&POL_REFUSAL, PortPolicy, "refusal", _names)
field_init(&POL_FIREWALL, PortPolicy, "firewall", _names)
field_init(&POL_HAIRPIN, PortPolicy, "hairpin", _names)
field_init(&PORT_NAME, ServicePort, "name", _names)
field_init(&PORT_PROTOCOL, ServicePort, "protocol", _names)
field_init(&PORT_NUMBER, ServicePort, "port", _names)
field_init(&PORT_CLUSTER_IPS, ServicePort, "cluster_ips", _names)
field_init(&PORT_NODE_PORT, ServicePort, "node_port", _names)
field_init(&PORT_EXTERNAL_IPS, ServicePort, "external_ips", _names)
field_init(&PORT_LB_IPS, ServicePort, "load_balancer_ips", _names)
field_init(&PORT_AFFINITY, ServicePort, "affinity_timeout", _names)
field_init(&PORT_EXTERNAL_LOCAL, ServicePort, "external_local", _names)
field_init(&PORT_INTERNAL_LOCAL, ServicePort, "internal_local", _names)
field_init(&EP_ADDRESS, Endpoint, "address", _names)
field_init(&EP_PORT, Endpoint, "port", _names)
field_init(&IP_VALUE, netaddr.IPAddress, "_value", _names)
field_init(&IP_MODULE, netaddr.IPAddress, "_module", _names)
cdef object _IPV4 = netaddr.strategy.ipv4


# -- the node's context, read once per Context object ------------------------------

cdef class _Node:
    cdef object ctx
    cdef str suffix, cluster_cidr, masq_source
    cdef bint compact, masquerade_all
    cdef tuple nodeport_destinations

cdef _Node _node = None


cdef _Node _node_of(object ctx):
    global _node
    if _node is not None and _node.ctx is ctx:
        return _node
    cdef _Node n = _Node.__new__(_Node)
    n.ctx, n.cluster_cidr = ctx, ctx.cluster_cidr
    n.suffix = "/32" if ctx.family == 4 else "/128"
    n.compact, n.masquerade_all = ctx.layout == COMPACT, ctx.masquerade_all
    n.nodeport_destinations = tuple(ctx.nodeport_destinations)
    n.masq_source = f"! -s {n.cluster_cidr} " if n.cluster_cidr else ""
    _node = n
    return n


# -- probabilities, formatted as Python formats them -----------------------------------

cdef list _chances = []        # k -> "-m statistic ... --probability 1/k " ("" for k = 1)


cdef str _chance(Py_ssize_t k):
    while len(_chances) <= k:
        _chances.append(_format_chance(len(_chances)))
    return <str> _chances[k]


cdef str _format_chance(Py_ssize_t k):
    if k <= 1:
        return ""
    cdef char* text = PyOS_double_to_string(1.0 / k, b'f', 10, 0, NULL)
    try:
        return f"-m statistic --mode random --probability {text.decode('ascii')} "
    finally:
        PyMem_Free(text)


# -- a port's own texts, in the arena ------------------------------------------------

cdef struct Text:
    Py_ssize_t at, n            # _arena.data[at:at + n]


cdef inline Py_ssize_t _mark() noexcept:
    return _arena.size


cdef inline Text _since(Py_ssize_t at) noexcept:
    cdef Text t
    t.at, t.n = at, _arena.size - at
    return t


cdef inline int put_text(Buf* b, Text t) except -1:
    if not _arena.ascii:
        b.ascii = False         # some text in the arena is not: decode what b holds
    return put(b, _arena.data + t.at, t.n)


cdef Text* _ips = NULL          # the port's addresses as text: cluster, external, then load-balancer IPs
cdef Py_ssize_t _ips_cap = 0


cdef int _ip_texts(tuple ips, Py_ssize_t first) except -1:
    """The addresses' texts into _ips[first:], as str(ip) gives them."""
    global _ips, _ips_cap
    cdef Py_ssize_t i, at, n = first + len(ips)
    cdef Text* grown
    if n > _ips_cap:
        grown = <Text*> PyMem_Realloc(_ips, max(n, 16) * sizeof(Text))
        if grown == NULL:
            raise MemoryError()
        _ips, _ips_cap = grown, max(n, 16)
    for i in range(len(ips)):
        at = _mark()
        _put_ip(&_arena, ips[i])
        _ips[first + i] = _since(at)
    return 0


cdef int _put_ip(Buf* b, object ip) except -1:
    """str(ip); an IPv4 address is formatted here from its integer, which
    spares netaddr's Python-level formatting."""
    if type(ip) is not netaddr.IPAddress or field(ip, &IP_MODULE) is not _IPV4:
        return put_s(b, str(ip))
    cdef unsigned long v = field(ip, &IP_VALUE)
    put_i(b, (v >> 24) & 255)
    put_c(b, ".")
    put_i(b, (v >> 16) & 255)
    put_c(b, ".")
    put_i(b, (v >> 8) & 255)
    put_c(b, ".")
    put_i(b, v & 255)
    return 0


cdef int _put_lower(Buf* b, str s) except -1:
    """s.lower() (ASCII by hand; anything else as Python lowers it)."""
    cdef Py_ssize_t i, n
    cdef const char* u
    cdef char c
    if not PyUnicode_IS_ASCII(s):
        return put_s(b, s.lower())
    u = PyUnicode_AsUTF8AndSize(s, &n)
    for i in range(n):
        c = u[i]
        if b'A' <= c <= b'Z':
            c += 32
        put(b, &c, 1)
    return 0


# -- endpoints -------------------------------------------------------------------

cdef struct Ep:
    PyObject* obj               # borrowed: the view holds the endpoint while we run
    const char* address         # borrowed UTF-8 of the endpoint's canonical IP text
    Py_ssize_t address_n
    bint address_ascii
    long port
    bint v6
    bint inline                 # DNATed straight from SVC (no SEP chain)
    char sep[NAME_CHARS]        # its SEP chain name, and its affinity list's (unset if neither exists)

cdef Ep* _eps = NULL
cdef Py_ssize_t _eps_cap = 0


cdef Ep* _room(Py_ssize_t n) except NULL:
    global _eps, _eps_cap
    cdef Ep* grown
    if n > _eps_cap or _eps == NULL:
        n = max(n, 2 * _eps_cap, 64)
        grown = <Ep*> PyMem_Realloc(_eps, n * sizeof(Ep))
        if grown == NULL:
            raise MemoryError()
        _eps, _eps_cap = grown, n
    return _eps


cdef int _put_address(Buf* b, Ep* x) except -1:
    if not x.address_ascii:
        b.ascii = False
    return put(b, x.address, x.address_n)


cdef int _put_target(Buf* b, Ep* x) except -1:
    """ip:port, or [ip]:port for IPv6."""
    if x.v6:
        put_c(b, "[")
    _put_address(b, x)
    put_c(b, "]:" if x.v6 else ":")
    put_i(b, x.port)
    return 0


cdef int _describe(_Port s, Ep* x, object e) except -1:
    cdef str address = field(e, &EP_ADDRESS)
    cdef Py_ssize_t i
    x.obj, x.port = <PyObject*> e, field(e, &EP_PORT)
    x.address = PyUnicode_AsUTF8AndSize(address, &x.address_n)
    x.address_ascii = PyUnicode_IS_ASCII(address)
    x.v6 = False
    for i in range(x.address_n):
        if x.address[i] == b':':
            x.v6 = True
            break
    x.inline = s.n.compact and not _among(e, s.hairpin)
    if x.inline and not s.affinity:
        return 0            # no chain, no affinity list: a digest saved per endpoint
    buf_reset(&_scratch)
    put_text(&_scratch, s.key)
    put_c(&_scratch, "/")
    _put_target(&_scratch, x)
    memcpy(x.sep, <char*> _SEP, NAME_CHARS - HASH_CHARS)
    sha256_b32(&_hasher, _scratch.data, _scratch.size, x.sep + NAME_CHARS - HASH_CHARS, HASH_CHARS)
    return 0


cdef inline bint _among(object e, tuple these):
    """e in these, by identity first (the policy shares its endpoint
    objects), else by equality, as a set built from them would answer."""
    cdef Py_ssize_t i
    for i in range(len(these)):
        if these[i] is e:
            return True
    return e in these


# -- one port ----------------------------------------------------------------------

cdef class _Port:
    """What the rules need from one port. One object, refilled per port:
    port_rules() holds the GIL throughout and never re-enters."""
    cdef _Node n
    cdef tuple cluster, local, hairpin, ranges      # endpoints; the firewall's source ranges as text
    cdef Py_ssize_t neps, ncluster_ips, nexternal_ips, nlb_ips
    cdef bint internal_local, external_local, accessible, has_internal, has_external, has_any
    cdef str refusal
    cdef long affinity, node_port
    cdef Text name, key, proto, match, comment      # comment: `-m comment --comment "<name>`
    cdef char svc[NAME_CHARS]
    cdef char svl[NAME_CHARS]
    cdef char ext[NAME_CHARS]
    cdef char fw[NAME_CHARS - 1]

    cdef Ep* endpoint(self, object e) except NULL:
        cdef Py_ssize_t i
        for i in range(self.neps):
            if _eps[i].obj == <PyObject*> e:
                return &_eps[i]
        # not one of all_reachable's objects: describe it in a spare slot
        _room(self.neps + 1)
        _describe(self, &_eps[self.neps], e)
        return &_eps[self.neps]

cdef _Port _s = _Port.__new__(_Port)


def port_rules(policy, ctx):
    _load(_s, policy, ctx)
    _chains(_s)
    return tuple.__new__(PortRules, (_nat_services(_s, &_out), _nat_nodeports(_s, &_out), _filter_services(_s, &_out),
                                     _filter_external(_s, &_out), _filter_firewall(_s, &_out),
                                     take(&_decl), take(&_rules)))


cdef int _load(_Port s, object policy, object ctx) except -1:
    cdef object p = field(policy, &POL_PORT)
    cdef object name = field(p, &PORT_NAME)
    s.n = _node_of(ctx)
    s.node_port, s.affinity = field(p, &PORT_NODE_PORT), field(p, &PORT_AFFINITY)
    s.internal_local, s.external_local = field(p, &PORT_INTERNAL_LOCAL), field(p, &PORT_EXTERNAL_LOCAL)
    _load_texts(s, p, name)
    cdef tuple ranges = field(policy, &POL_FIREWALL)
    s.ranges = tuple([str(r) for r in ranges]) if ranges else ()
    s.accessible = s.node_port != 0 or s.nexternal_ips > 0 or s.nlb_ips > 0
    s.cluster, s.local, s.hairpin = field(policy, &POL_CLUSTER), field(policy, &POL_LOCAL), field(policy, &POL_HAIRPIN)
    s.has_internal = len(<tuple> field(policy, &POL_INTERNAL)) > 0
    s.has_external = len(<tuple> field(policy, &POL_EXTERNAL)) > 0
    s.has_any, s.refusal = field(policy, &POL_HAS_ANY), field(policy, &POL_REFUSAL)
    _load_chain_names(s)
    cdef tuple reachable = field(policy, &POL_REACHABLE)
    s.neps = len(reachable)
    _room(s.neps)
    cdef Py_ssize_t i
    for i in range(s.neps):
        _describe(s, &_eps[i], reachable[i])
    return 0


cdef int _load_texts(_Port s, object p, object name) except -1:
    """The port's texts into the arena: its comment (which holds its name,
    which starts its key), protocol, match and addresses."""
    cdef str port_name = name[2], protocol = field(p, &PORT_PROTOCOL)      # name: a PortName, a tuple
    cdef Py_ssize_t at
    buf_reset(&_arena)
    put_c(&_arena, '-m comment --comment "')
    at = _mark()
    put_s(&_arena, name[0])
    put_c(&_arena, "/")
    put_s(&_arena, name[1])
    if port_name:
        put_c(&_arena, ":")
        put_s(&_arena, port_name)
    s.name, s.comment = _since(at), _since(0)
    put_c(&_arena, "/")
    put_s(&_arena, protocol)
    s.key = _since(at)
    at = _mark()
    _put_lower(&_arena, protocol)
    s.proto = _since(at)
    at = _mark()            # (not copied from s.proto: the arena may move as it grows)
    put_c(&_arena, "-p ")
    _put_lower(&_arena, protocol)
    put_c(&_arena, " -m ")
    _put_lower(&_arena, protocol)
    put_c(&_arena, " --dport ")
    put_i(&_arena, field(p, &PORT_NUMBER))
    s.match = _since(at)
    cdef tuple cluster_ips = field(p, &PORT_CLUSTER_IPS), external_ips = field(p, &PORT_EXTERNAL_IPS)
    cdef tuple lb_ips = field(p, &PORT_LB_IPS)
    s.ncluster_ips, s.nexternal_ips, s.nlb_ips = len(cluster_ips), len(external_ips), len(lb_ips)
    _ip_texts(cluster_ips, 0)
    _ip_texts(external_ips, s.ncluster_ips)
    _ip_texts(lb_ips, s.ncluster_ips + s.nexternal_ips)
    return 0


cdef int _load_chain_names(_Port s) except -1:
    """NP-SVC-, NP-SVL-, NP-EXT- and NP-FW- and one digest of the key."""
    cdef char digest[HASH_CHARS]
    buf_reset(&_scratch)
    put_text(&_scratch, s.key)
    sha256_b32(&_hasher, _scratch.data, _scratch.size, digest, HASH_CHARS)
    _name(s.svc, _SVC, digest)
    _name(s.svl, _SVL, digest)
    _name(s.ext, _EXT, digest)
    _name(s.fw, _FW, digest)
    return 0


cdef inline int _name(char* out, bytes prefix, const char* digest) except -1:
    """A chain name: the prefix (from chains.py), then the digest."""
    memcpy(out, <char*> prefix, len(prefix))
    memcpy(out + len(prefix), digest, HASH_CHARS)
    return 0


# -- small writers: each appends one piece of a rule ---------------------------

cdef inline int _comment(_Port s, Buf* b, const char* what) except -1:
    put_text(b, s.comment)
    put_c(b, what)
    put_c(b, '"')
    return 0


cdef inline int _head(Buf* b, const char* chain, Py_ssize_t n) except -1:
    put_c(b, "-A ")
    put(b, chain, n)
    put_c(b, " ")
    return 0


cdef inline int _jump(Buf* b, const char* target, Py_ssize_t n) except -1:
    put_c(b, " -j ")
    put(b, target, n)
    put_c(b, "\n")
    return 0


cdef inline int _declare(Buf* b, const char* chain, Py_ssize_t n) except -1:
    put_c(b, ":")
    put(b, chain, n)
    put_c(b, " - [0:0]\n")
    return 0


cdef inline int _proto(_Port s, Buf* b) except -1:
    """`-p proto -m proto `"""
    put_c(b, "-p ")
    put_text(b, s.proto)
    put_c(b, " -m ")
    put_text(b, s.proto)
    put_c(b, " ")
    return 0


cdef inline int _to_address(_Port s, Buf* b, const char* chain, Py_ssize_t n, Text ip) except -1:
    """`-A chain -d ip/32 -p proto -m proto --dport port `"""
    _head(b, chain, n)
    put_c(b, "-d ")
    put_text(b, ip)
    put_s(b, s.n.suffix)
    put_c(b, " ")
    put_text(b, s.match)
    put_c(b, " ")
    return 0


cdef inline int _goto(Buf* b, const char* chain, const char* target) except -1:
    """`-A chain -j target`, a rule that matches everything (both chains the port's)."""
    _head(b, chain, NAME_CHARS)
    put_c(b, "-j ")
    put(b, target, NAME_CHARS)
    put_c(b, "\n")
    return 0


cdef int _address_rules(_Port s, Buf* b, const char* chain, Py_ssize_t first, Py_ssize_t count, const char* what,
                        const char* target, Py_ssize_t target_n) except -1:
    """`-A chain -d ip -p proto -m proto --dport port -m comment ... -j target`
    for the port's addresses _ips[first:first + count]."""
    cdef Py_ssize_t i
    cdef Py_ssize_t n = len(chain)
    for i in range(first, first + count):
        _to_address(s, b, chain, n, _ips[i])
        _comment(s, b, what)
        _jump(b, target, target_n)
    return 0


cdef int _node_port_rule(_Port s, Buf* b, const char* chain, str dest, const char* what, const char* target,
                         Py_ssize_t target_n) except -1:
    _head(b, chain, len(chain))
    if dest is not None:
        put_s(b, dest)
        put_c(b, " ")
    _proto(s, b)
    put_c(b, "--dport ")
    put_i(b, s.node_port)
    put_c(b, " ")
    _comment(s, b, what)
    _jump(b, target, target_n)
    return 0


# -- top-level chains ------------------------------------------------------------

cdef str _nat_services(_Port s, Buf* b):
    buf_reset(b)
    if s.has_internal:
        _address_rules(s, b, _NAT_SERVICES, 0, s.ncluster_ips, " cluster IP",
                       <char*> s.svl if s.internal_local else <char*> s.svc, NAME_CHARS)
    if s.has_any:
        _address_rules(s, b, _NAT_SERVICES, s.ncluster_ips, s.nexternal_ips, " external IP", s.ext, NAME_CHARS)
        if s.ranges:
            _address_rules(s, b, _NAT_SERVICES, s.ncluster_ips + s.nexternal_ips, s.nlb_ips, " loadbalancer IP",
                           s.fw, NAME_CHARS - 1)
        else:
            _address_rules(s, b, _NAT_SERVICES, s.ncluster_ips + s.nexternal_ips, s.nlb_ips, " loadbalancer IP",
                           s.ext, NAME_CHARS)
    return take(b)


cdef str _nat_nodeports(_Port s, Buf* b):
    if not (s.node_port and s.has_any):
        return ""
    buf_reset(b)
    _node_port_rule(s, b, _NAT_NODEPORTS, None, " node port", s.ext, NAME_CHARS)
    return take(b)


cdef const char* _why(_Port s):
    return " has no endpoints" if s.refusal == REJECT else " has no local endpoints"


cdef str _filter_services(_Port s, Buf* b):
    if s.has_internal:
        return ""
    buf_reset(b)
    cdef bytes refusal = s.refusal.encode()
    _address_rules(s, b, _FILTER_SERVICES, 0, s.ncluster_ips, _why(s), refusal, len(refusal))
    return take(b)


cdef str _filter_external(_Port s, Buf* b):
    if s.has_external or not s.accessible:
        return ""
    buf_reset(b)
    cdef bytes refusal = s.refusal.encode()
    _address_rules(s, b, _FILTER_EXTERNAL, s.ncluster_ips, s.nexternal_ips + s.nlb_ips, _why(s), refusal,
                   len(refusal))
    if s.node_port:
        for dest in s.n.nodeport_destinations:
            _node_port_rule(s, b, _FILTER_EXTERNAL, dest, _why(s), refusal, len(refusal))
    return take(b)


cdef str _filter_firewall(_Port s, Buf* b):
    if not s.ranges:
        return ""
    buf_reset(b)
    cdef bytes why = b" traffic not accepted by " + s.fw[:NAME_CHARS - 1]
    _address_rules(s, b, _FILTER_FIREWALL, s.ncluster_ips + s.nexternal_ips, s.nlb_ips, why, "DROP", 4)
    return take(b)


# -- the port's own chains ------------------------------------------------------

cdef int _chains(_Port s) except -1:
    """The nat chains the port owns: declarations into _decl, rules into _rules."""
    cdef Py_ssize_t i
    buf_reset(&_decl)
    buf_reset(&_rules)
    if len(s.cluster):
        _declare(&_decl, s.svc, NAME_CHARS)
        _masquerade(s, &_rules, s.svc, not s.internal_local)
        _pick(s, &_rules, s.svc, s.cluster)
    if len(s.local):
        _declare(&_decl, s.svl, NAME_CHARS)
        _masquerade(s, &_rules, s.svl, s.internal_local)
        _pick(s, &_rules, s.svl, s.local)
    if s.accessible and s.has_any:
        _declare(&_decl, s.ext, NAME_CHARS)
        _external(s, &_rules)
    if s.ranges:
        _declare(&_decl, s.fw, NAME_CHARS - 1)
        for r in s.ranges:
            _head(&_rules, s.fw, NAME_CHARS - 1)
            put_c(&_rules, "-s ")
            put_s(&_rules, <str> r)
            put_c(&_rules, " ")
            _comment(s, &_rules, " loadbalancer IP")
            _jump(&_rules, s.ext, NAME_CHARS)
    for i in range(s.neps):
        if not _eps[i].inline:
            _declare(&_decl, _eps[i].sep, NAME_CHARS)
            _endpoint_chain(s, &_rules, &_eps[i])
    return 0


cdef int _masquerade(_Port s, Buf* b, const char* chain, bint serves_cluster_ip) except -1:
    cdef Py_ssize_t i
    if not serves_cluster_ip or not (s.n.masquerade_all or s.n.cluster_cidr):
        return 0
    for i in range(s.ncluster_ips):
        _to_address(s, b, chain, NAME_CHARS, _ips[i])
        if not s.n.masquerade_all:
            put_s(b, s.n.masq_source)
        _comment(s, b, " cluster IP")
        _jump(b, _MARK_MASQ, len(_MARK_MASQ))
    return 0


cdef inline int _dnat_matches(_Port s, Buf* b) except -1:
    """What an inline DNAT rule matches before the caller's matches."""
    _proto(s, b)
    _comment(s, b, "")
    put_c(b, " ")
    return 0


cdef inline int _dnat_to(Buf* b, Ep* x) except -1:
    put_c(b, "-j DNAT --to-destination ")
    _put_target(b, x)
    put_c(b, "\n")
    return 0


cdef inline int _jump_sep(Buf* b, Ep* x) except -1:
    put_c(b, "-j ")
    put(b, x.sep, NAME_CHARS)
    put_c(b, "\n")
    return 0


cdef int _recent(_Port s, Buf* b, Ep* x, bint check) except -1:
    put_c(b, "-m recent --name ")
    put(b, x.sep, NAME_CHARS)
    if check:
        put_c(b, " --rcheck --seconds ")
        put_i(b, s.affinity)
        put_c(b, " --reap ")
    else:
        put_c(b, " --set ")
    return 0


cdef int _pick(_Port s, Buf* b, const char* chain, tuple endpoints) except -1:
    cdef Py_ssize_t i, n = len(endpoints)
    cdef Ep* x
    if s.affinity:
        for i in range(n):
            x = s.endpoint(endpoints[i])
            _head(b, chain, NAME_CHARS)
            if x.inline:
                _dnat_matches(s, b)
                _recent(s, b, x, True)
                _dnat_to(b, x)
            else:
                _recent(s, b, x, True)
                _jump_sep(b, x)
    for i in range(n):
        x = s.endpoint(endpoints[i])
        _head(b, chain, NAME_CHARS)
        if x.inline:
            _dnat_matches(s, b)
            put_s(b, _chance(n - i))
            if s.affinity:
                _recent(s, b, x, False)
            _dnat_to(b, x)
        else:
            put_s(b, _chance(n - i))
            _jump_sep(b, x)
    return 0


cdef int _external(_Port s, Buf* b) except -1:
    if not s.external_local:
        _head(b, s.ext, NAME_CHARS)
        _comment(s, b, " masquerade traffic for external destinations")
        _jump(b, _MARK_MASQ, len(_MARK_MASQ))
        if len(s.cluster):
            _goto(b, s.ext, s.svc)
        return 0
    # the cluster-wide chain that pods and the node short-circuit to, if any
    cdef const char* everywhere = <char*> s.svc if len(s.cluster) else (<char*> s.svl if len(s.local) else NULL)
    if everywhere != NULL and s.n.cluster_cidr:
        _head(b, s.ext, NAME_CHARS)
        put_c(b, "-s ")
        put_s(b, s.n.cluster_cidr)
        put_c(b, " ")
        _comment(s, b, " pod traffic for external destinations")
        _jump(b, everywhere, NAME_CHARS)
    _head(b, s.ext, NAME_CHARS)
    put_c(b, "-m addrtype --src-type LOCAL ")
    _comment(s, b, " masquerade LOCAL traffic for external destinations")
    _jump(b, _MARK_MASQ, len(_MARK_MASQ))
    if everywhere != NULL:
        _head(b, s.ext, NAME_CHARS)
        put_c(b, "-m addrtype --src-type LOCAL ")
        _comment(s, b, " route LOCAL traffic for external destinations")
        _jump(b, everywhere, NAME_CHARS)
    if len(s.local):
        _goto(b, s.ext, s.svl)
    return 0


cdef int _endpoint_chain(_Port s, Buf* b, Ep* x) except -1:
    _head(b, x.sep, NAME_CHARS)
    put_c(b, "-s ")
    _put_address(b, x)
    put_s(b, s.n.suffix)
    put_c(b, " ")
    _comment(s, b, "")
    _jump(b, _MARK_MASQ, len(_MARK_MASQ))
    _head(b, x.sep, NAME_CHARS)
    _proto(s, b)
    if s.affinity:
        _recent(s, b, x, False)
    _comment(s, b, "")
    put_c(b, " ")
    _dnat_to(b, x)
    return 0
