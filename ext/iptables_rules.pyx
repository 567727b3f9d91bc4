# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of port_rules() in netplane/proxy/iptables/rules.py.

Read that module for what the rules mean; this one only makes them fast,
and must give byte-identical PortRules for every input. The differences
are of cost, not of content:
- a port's text is written into one reused C buffer, and Python strings
  are made only for whole chains (one per block, not one per rule);
- an endpoint is a C struct (its address borrowed from the model, its
  port a C long, its SEP chain name in a char array), not a Python object;
- chain names come from SHA-256 and base32 in C (chainhash.pxd), one
  digest per port for its SVC/SVL/EXT/FW chains and one per endpoint;
- the node's Context is read once per Context object, not once per port;
- endpoints are matched to their names by identity within the port, as
  categorize() hands out the same objects in its cluster, local and
  all_reachable tuples (an equal but distinct object gets its own,
  identical, name).
"""
from cpython.mem cimport PyMem_Realloc
from cpython.ref cimport PyObject
from libc.string cimport memcpy
from chainhash cimport Hasher, hasher_init, sha256_b32
from textbuf cimport Buf, buf_init, buf_reset, put, put_c, put_i, put_s, take

from netaddr import IPAddress

from netplane.proxy.iptables.rules import COMPACT, PortRules

cdef extern from "Python.h":
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* ptype) except NULL
    void PyMem_Free(void* p)

DEF HASH_CHARS = 16
DEF SEP_CHARS = 23              # "NP-SEP-" and the hash

cdef Hasher _hasher
hasher_init(&_hasher)
cdef Buf _out, _scratch         # reused by every call: the GIL is held throughout
buf_init(&_out, 1 << 16)
buf_init(&_scratch, 512)


# -- the node's context, read once per Context object ------------------------------

cdef class _Node:
    cdef object ctx
    cdef str suffix, node, cluster_cidr, masq_source
    cdef bint compact, masquerade_all
    cdef tuple nodeport_destinations

cdef _Node _node = None


cdef _Node _node_of(object ctx):
    global _node
    if _node is not None and _node.ctx is ctx:
        return _node
    cdef _Node n = _Node.__new__(_Node)
    n.ctx, n.node, n.cluster_cidr = ctx, ctx.node, ctx.cluster_cidr
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


# -- endpoints -------------------------------------------------------------------

cdef struct Ep:
    PyObject* obj               # borrowed: the view holds the endpoint while we run
    PyObject* address           # borrowed str, the endpoint's canonical IP text
    long port
    bint v6
    bint inline                 # DNATed straight from SVC (no SEP chain)
    char sep[SEP_CHARS]         # its SEP chain name, and its affinity list's (unset if neither exists)

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


cdef int _put_target(Buf* b, Ep* x) except -1:
    """ip:port, or [ip]:port for IPv6."""
    if x.v6:
        put_c(b, "[")
    put_s(b, <str> x.address)
    put_c(b, "]:" if x.v6 else ":")
    put_i(b, x.port)
    return 0


cdef int _describe(Ep* x, object e, str key, bint inline_wanted, str node, bint named) except -1:
    """named: whether its SEP name is needed even when it is inlined (as its affinity list's name)."""
    cdef str node_of = e.node
    cdef str address = e.address
    x.obj, x.address, x.port = <PyObject*> e, <PyObject*> address, e.port
    x.v6 = ":" in address
    x.inline = inline_wanted and len(node_of) > 0 and node_of != node
    if x.inline and not named:
        return 0            # no chain, no affinity list: a digest saved per endpoint
    buf_reset(&_scratch)
    put_s(&_scratch, key)
    put_c(&_scratch, "/")
    _put_target(&_scratch, x)
    memcpy(x.sep, b"NP-SEP-", 7)
    sha256_b32(&_hasher, _scratch.data, _scratch.size, x.sep + 7, HASH_CHARS)
    return 0


# -- one port ----------------------------------------------------------------------

cdef class _Port:
    cdef _Node n
    cdef object p
    cdef str name, proto, svc, svl, ext, fw, match, comment_prefix, key
    cdef Py_ssize_t neps, cap
    cdef bint internal_local, external_local, accessible, has_svc, has_svl, has_any, inline_wanted
    cdef long affinity, node_port
    cdef tuple cluster, local, cluster_ips, external_ips, lb_ips, source_ranges   # the IPs as text

    cdef Ep* endpoint(self, object e) except NULL:
        cdef Py_ssize_t i
        for i in range(self.neps):
            if _eps[i].obj == <PyObject*> e:
                return &_eps[i]
        # not one of all_reachable's objects: describe it in a spare slot
        _room(self.neps + 1)
        _describe(&_eps[self.neps], e, self.key, self.inline_wanted, self.n.node, self.affinity != 0)
        return &_eps[self.neps]


def port_rules(view, ctx):
    cdef _Port s = _port(view, ctx)
    return tuple.__new__(PortRules, (_nat_services(s, &_out), _nat_nodeports(s, &_out), _filter_services(s, &_out),
                                     _filter_external(s, &_out), _filter_firewall(s, &_out), _chains(s, &_out)))


cdef tuple _texts(tuple ips):
    return tuple([_ip_text(ip) for ip in ips]) if ips else ()


cdef str _ip_text(object ip):
    """str(ip); an IPv4 address is formatted here from its integer, which
    spares netaddr's Python-level formatting (a third of the time)."""
    if type(ip) is not IPAddress or ip.version != 4:
        return str(ip)
    cdef unsigned long v = int(ip)
    cdef Buf* b = &_scratch
    buf_reset(b)
    put_i(b, (v >> 24) & 255)
    put_c(b, ".")
    put_i(b, (v >> 16) & 255)
    put_c(b, ".")
    put_i(b, (v >> 8) & 255)
    put_c(b, ".")
    put_i(b, v & 255)
    return take(b)


cdef _Port _port(view, ctx):
    cdef _Port s = _Port.__new__(_Port)
    cdef object p = view.port
    cdef object cat = view.endpoints
    cdef object name = p.name
    cdef char digest[HASH_CHARS]
    cdef str port_name = name.port
    s.n, s.p = _node_of(ctx), p
    s.name = f"{name.namespace}/{name.name}:{port_name}" if port_name else f"{name.namespace}/{name.name}"
    s.key = f"{s.name}/{p.protocol}"
    s.proto = p.protocol.lower()
    s.node_port, s.affinity = p.node_port, p.affinity_timeout
    s.internal_local, s.external_local = p.internal_local, p.external_local
    s.cluster_ips, s.external_ips, s.lb_ips = _texts(p.cluster_ips), _texts(p.external_ips), _texts(p.load_balancer_ips)
    s.source_ranges = _texts(p.load_balancer_source_ranges)
    s.accessible = bool(s.node_port or s.external_ips or s.lb_ips)
    s.cluster, s.local, s.has_any = cat.cluster, cat.local, cat.has_any
    s.has_svc = (not s.internal_local or s.accessible) and len(s.cluster) > 0
    s.has_svl = (s.internal_local or (s.accessible and s.external_local)) and len(s.local) > 0
    s.match = f"-p {s.proto} -m {s.proto} --dport {p.port}"
    s.comment_prefix = f'-m comment --comment "{s.name}'
    buf_reset(&_scratch)
    put_s(&_scratch, s.key)
    sha256_b32(&_hasher, _scratch.data, _scratch.size, digest, HASH_CHARS)
    cdef str hashed = digest[:HASH_CHARS].decode("ascii")
    # only the chain names this port can use (a str each costs, at 10k ports)
    s.svc = "NP-SVC-" + hashed
    s.svl = "NP-SVL-" + hashed if s.internal_local or s.external_local else None
    s.ext = "NP-EXT-" + hashed if s.accessible else None
    s.fw = "NP-FW-" + hashed if s.source_ranges else None
    s.inline_wanted = s.n.compact and not (s.external_local and s.accessible)
    cdef tuple reachable = cat.all_reachable
    s.neps = len(reachable)
    _room(s.neps)
    cdef Py_ssize_t i
    for i in range(s.neps):
        _describe(&_eps[i], reachable[i], s.key, s.inline_wanted, s.n.node, s.affinity != 0)
    return s


# -- small writers: each appends one piece of a rule ---------------------------

cdef inline int _comment(_Port s, Buf* b, const char* what) except -1:
    put_s(b, s.comment_prefix)
    put_c(b, what)
    put_c(b, '"')
    return 0


cdef inline int _head(Buf* b, str chain) except -1:
    put_c(b, "-A ")
    put_s(b, chain)
    put_c(b, " ")
    return 0


cdef inline int _head_sep(Buf* b, Ep* x) except -1:
    put_c(b, "-A ")
    put(b, x.sep, SEP_CHARS)
    put_c(b, " ")
    return 0


cdef inline int _jump(Buf* b, str target) except -1:
    put_c(b, " -j ")
    put_s(b, target)
    put_c(b, "\n")
    return 0


cdef inline int _proto(_Port s, Buf* b) except -1:
    """`-p proto -m proto `"""
    put_c(b, "-p ")
    put_s(b, s.proto)
    put_c(b, " -m ")
    put_s(b, s.proto)
    put_c(b, " ")
    return 0


cdef inline int _to_address(_Port s, Buf* b, str chain, str ip) except -1:
    """`-A chain -d ip/32 -p proto -m proto --dport port `"""
    _head(b, chain)
    put_c(b, "-d ")
    put_s(b, ip)
    put_s(b, s.n.suffix)
    put_c(b, " ")
    put_s(b, s.match)
    put_c(b, " ")
    return 0


cdef inline int _goto(Buf* b, str chain, str target) except -1:
    """`-A chain -j target`, a rule that matches everything."""
    _head(b, chain)
    put_c(b, "-j ")
    put_s(b, target)
    put_c(b, "\n")
    return 0


cdef int _address_rules(_Port s, Buf* b, str chain, tuple ips, const char* what, str target) except -1:
    """`-A chain -d ip -p proto -m proto --dport port -m comment ... -j target` per ip."""
    for ip in ips:
        _to_address(s, b, chain, <str> ip)
        _comment(s, b, what)
        _jump(b, target)
    return 0


cdef int _node_port_rule(_Port s, Buf* b, str chain, str dest, const char* what, str target) except -1:
    _head(b, chain)
    if dest is not None:
        put_s(b, dest)
        put_c(b, " ")
    _proto(s, b)
    put_c(b, "--dport ")
    put_i(b, s.node_port)
    put_c(b, " ")
    _comment(s, b, what)
    _jump(b, target)
    return 0


# -- top-level chains ------------------------------------------------------------

cdef str _nat_services(_Port s, Buf* b):
    buf_reset(b)
    if len(s.local if s.internal_local else s.cluster):
        _address_rules(s, b, "NP-SERVICES", s.cluster_ips, " cluster IP", s.svl if s.internal_local else s.svc)
    if s.has_any:
        _address_rules(s, b, "NP-SERVICES", s.external_ips, " external IP", s.ext)
        _address_rules(s, b, "NP-SERVICES", s.lb_ips, " loadbalancer IP", s.fw if s.source_ranges else s.ext)
    return take(b)


cdef str _nat_nodeports(_Port s, Buf* b):
    if not (s.node_port and s.has_any):
        return ""
    buf_reset(b)
    _node_port_rule(s, b, "NP-NODEPORTS", None, " node port", s.ext)
    return take(b)


cdef const char* _why(_Port s):
    return " has no endpoints" if not s.has_any else " has no local endpoints"


cdef str _refusal(_Port s):
    return "REJECT" if not s.has_any else "DROP"


cdef str _filter_services(_Port s, Buf* b):
    if len(s.local if s.internal_local else s.cluster):
        return ""
    buf_reset(b)
    _address_rules(s, b, "NP-SERVICES", s.cluster_ips, _why(s), _refusal(s))
    return take(b)


cdef str _filter_external(_Port s, Buf* b):
    if len(s.local if s.external_local else s.cluster) or not s.accessible:
        return ""
    buf_reset(b)
    _address_rules(s, b, "NP-EXTERNAL-SERVICES", s.external_ips + s.lb_ips, _why(s), _refusal(s))
    if s.node_port:
        for dest in s.n.nodeport_destinations:
            _node_port_rule(s, b, "NP-EXTERNAL-SERVICES", dest, _why(s), _refusal(s))
    return take(b)


cdef str _filter_firewall(_Port s, Buf* b):
    if not (s.source_ranges and s.has_any):
        return ""
    buf_reset(b)
    cdef bytes why = (" traffic not accepted by " + s.fw).encode()
    _address_rules(s, b, "NP-PROXY-FIREWALL", s.lb_ips, why, "DROP")
    return take(b)


# -- the port's own chains ------------------------------------------------------

cdef tuple _chains(_Port s, Buf* b):
    cdef list out = []
    cdef Py_ssize_t i
    if s.has_svc:
        buf_reset(b)
        _masquerade(s, b, s.svc, not s.internal_local)
        _pick(s, b, s.svc, s.cluster)
        out.append((s.svc, take(b)))
    if s.has_svl:
        buf_reset(b)
        _masquerade(s, b, s.svl, s.internal_local)
        _pick(s, b, s.svl, s.local)
        out.append((s.svl, take(b)))
    if s.accessible and s.has_any:
        buf_reset(b)
        _external(s, b)
        out.append((s.ext, take(b)))
    if s.source_ranges and s.lb_ips and s.has_any:
        buf_reset(b)
        for r in s.source_ranges:
            _head(b, s.fw)
            put_c(b, "-s ")
            put_s(b, <str> r)
            put_c(b, " ")
            _comment(s, b, " loadbalancer IP")
            _jump(b, s.ext)
        out.append((s.fw, take(b)))
    for i in range(s.neps):
        if not _eps[i].inline:
            buf_reset(b)
            _endpoint_chain(s, b, &_eps[i])
            out.append((_eps[i].sep[:SEP_CHARS].decode("ascii"), take(b)))
    return tuple(out)


cdef int _masquerade(_Port s, Buf* b, str chain, bint serves_cluster_ip) except -1:
    if not serves_cluster_ip or not (s.n.masquerade_all or s.n.cluster_cidr):
        return 0
    for ip in s.cluster_ips:
        _to_address(s, b, chain, <str> ip)
        if not s.n.masquerade_all:
            put_s(b, s.n.masq_source)
        _comment(s, b, " cluster IP")
        _jump(b, "NP-MARK-MASQ")
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
    put(b, x.sep, SEP_CHARS)
    put_c(b, "\n")
    return 0


cdef int _recent(_Port s, Buf* b, Ep* x, bint check) except -1:
    put_c(b, "-m recent --name ")
    put(b, x.sep, SEP_CHARS)
    if check:
        put_c(b, " --rcheck --seconds ")
        put_i(b, s.affinity)
        put_c(b, " --reap ")
    else:
        put_c(b, " --set ")
    return 0


cdef int _pick(_Port s, Buf* b, str chain, tuple endpoints) except -1:
    cdef Py_ssize_t i, n = len(endpoints)
    cdef Ep* x
    if s.affinity:
        for i in range(n):
            x = s.endpoint(endpoints[i])
            _head(b, chain)
            if x.inline:
                _dnat_matches(s, b)
                _recent(s, b, x, True)
                _dnat_to(b, x)
            else:
                _recent(s, b, x, True)
                _jump_sep(b, x)
    for i in range(n):
        x = s.endpoint(endpoints[i])
        _head(b, chain)
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
        _head(b, s.ext)
        _comment(s, b, " masquerade traffic for external destinations")
        _jump(b, "NP-MARK-MASQ")
        if s.has_svc:
            _goto(b, s.ext, s.svc)
        return 0
    cdef str everywhere = s.svc if s.has_svc else (s.svl if s.has_svl else "")
    if everywhere and s.n.cluster_cidr:
        _head(b, s.ext)
        put_c(b, "-s ")
        put_s(b, s.n.cluster_cidr)
        put_c(b, " ")
        _comment(s, b, " pod traffic for external destinations")
        _jump(b, everywhere)
    _head(b, s.ext)
    put_c(b, "-m addrtype --src-type LOCAL ")
    _comment(s, b, " masquerade LOCAL traffic for external destinations")
    _jump(b, "NP-MARK-MASQ")
    if everywhere:
        _head(b, s.ext)
        put_c(b, "-m addrtype --src-type LOCAL ")
        _comment(s, b, " route LOCAL traffic for external destinations")
        _jump(b, everywhere)
    if s.has_svl:
        _goto(b, s.ext, s.svl)
    return 0


cdef int _endpoint_chain(_Port s, Buf* b, Ep* x) except -1:
    _head_sep(b, x)
    put_c(b, "-s ")
    put_s(b, <str> x.address)
    put_s(b, s.n.suffix)
    put_c(b, " ")
    _comment(s, b, "")
    _jump(b, "NP-MARK-MASQ")
    _head_sep(b, x)
    _proto(s, b)
    if s.affinity:
        _recent(s, b, x, False)
    _comment(s, b, "")
    put_c(b, " ")
    _dnat_to(b, x)
    return 0
