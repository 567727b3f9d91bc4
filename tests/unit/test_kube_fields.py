"""The checked field readers: the fast IP parser against netaddr, and names."""
import ipaddress

import netaddr
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from netplane.kube.fields import (InvalidObject, dns1035_label, dns1123_label, dns1123_subdomain, ip_address,
                                  parse_ip)


def netaddr_verdict(text):
    """What ip_address accepted before parse_ip: a str netaddr.IPAddress takes."""
    if not isinstance(text, str):
        return None
    try:
        return netaddr.IPAddress(text)
    except (netaddr.AddrFormatError, TypeError, ValueError):
        return None


def octet():
    return st.one_of(st.integers(0, 255).map(str), st.integers(0, 999).map(str),
                     st.integers(0, 255).map(lambda n: f"0{n}"),
                     st.sampled_from(["", "00", "0x1", "-1", "+1", " 1", "1 "]))


quad = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: "%d.%d.%d.%d" % t)
dotted = st.one_of(st.lists(octet(), min_size=4, max_size=4), st.lists(octet(), min_size=1, max_size=6)).map(".".join)
ipv6 = st.integers(0, 2**128 - 1).flatmap(lambda n: st.sampled_from([
    str(ipaddress.IPv6Address(n)), ipaddress.IPv6Address(n).exploded, str(ipaddress.IPv6Address(n)).upper(),
    f"::ffff:{ipaddress.IPv4Address(n & 0xffffffff)}", f"{ipaddress.IPv6Address(n)}%eth0",
    f"{ipaddress.IPv6Address(n)}/64", f" {ipaddress.IPv6Address(n)}", f"[{ipaddress.IPv6Address(n)}]"]))
soup = st.text(alphabet="0123456789abcdefABCDEFx:.%/[] \t\n\x00\u0661\ud800", max_size=45)
not_text = st.one_of(st.integers(), st.none(), st.binary(max_size=8), st.floats(),
                     st.lists(st.just("10.0.0.1"), max_size=2))
anything = st.one_of(quad, quad, dotted, ipv6, ipv6, soup, not_text)


@settings(max_examples=3000, deadline=None)
@given(anything)
@example("")
@example("::")
@example("::1")
@example("::ffff:1.2.3.4")
@example("::FFFF:1.2.3.4")
@example("::ffff:01.2.3.4")
@example("FD00::1")
@example("fe80::1%eth0")
@example("0.0.0.0")
@example("255.255.255.255")
@example("01.2.3.4")
@example("1.2.3.04")
@example("1.2.3")
@example("1.2.3.4.5")
@example("10.0.0.1 ")
@example("\t10.0.0.1")
@example("10.0.0.1\n")
@example("10.0.0.1\x00")
@example("1.2.3.4/32")
@example("\u0661.2.3.4")                     # an Arabic-Indic digit one
@example("1:2:3:4:5:6:7:8")
@example("1:2:3:4:5:6:7:8:9")
@example("1::2::3")
@example(167772161)
@example(b"10.0.0.1")
def test_parse_ip_accepts_and_rejects_what_netaddr_does(text):
    expected = netaddr_verdict(text)
    parsed = parse_ip(text)
    if expected is None:
        assert parsed is None
        with pytest.raises(InvalidObject) as err:
            ip_address(text, "spec.clusterIPs")
        assert str(err.value) == f"spec.clusterIPs: {text!r} is not an IP address"
        return
    ip, version, value, canonical = parsed
    assert (ip, ip.version, int(ip), type(ip)) == (expected, expected.version, int(expected), netaddr.IPAddress)
    assert (version, value) == (expected.version, int(expected))
    assert canonical == str(expected) == str(ip)          # IPv4: the validated input text itself
    if version == 4:
        assert canonical is text
    assert ip_address(text, "x") == expected


def test_parsed_addresses_behave_like_netaddr_ones():
    ip = parse_ip("10.1.2.3")[0]
    assert ip + 1 == netaddr.IPAddress("10.1.2.4") and ip in netaddr.IPNetwork("10.0.0.0/8")
    assert hash(ip) == hash(netaddr.IPAddress("10.1.2.3")) and repr(ip) == "IPAddress('10.1.2.3')"
    v6 = parse_ip("FD00:0::01")[0]
    assert v6 == netaddr.IPAddress("fd00::1") and v6.version == 6 and str(v6) == "fd00::1"


@pytest.mark.parametrize("check, good, bad", [
    (dns1123_label, ["a", "0", "web-1", "1abc", "a" * 63], ["", "A", "a_b", "-a", "a-", "a.b", "a" * 64]),
    (dns1035_label, ["a", "web-1", "a" * 63], ["", "1abc", "Web", "a-", "a.b", "a" * 64]),
    (dns1123_subdomain, ["a", "web-abc.x", "0.1", ("a" * 63 + ".") * 3 + "a" * 61],
     ["", "a..b", ".a", "a.", "A.b", "a_b", ("a" * 63 + ".") * 3 + "a" * 62]),
])
def test_kubernetes_names(check, good, bad):
    for name in good:
        assert check(name, "metadata.name") == name
    for name in bad + ['a"b', "a\nb", "a b", "a\n", 5, None, ["a"]]:
        with pytest.raises(InvalidObject, match=r"^metadata\.name .* is not an RFC"):
            check(name, "metadata.name")
