"""The pod network modes, registered by name. Each is one module with a
pure `plan(me, peers, underlay, settings) -> Plan`."""
from netplane.podnet.modes import routed, vxlan

MODES = {"vxlan": vxlan.plan, "routed": routed.plan}
