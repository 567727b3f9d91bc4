"""A small synchronous rtnetlink transport over pyroute2's message classes.

Theory of operation: pyroute2 knows how to encode and decode every rtnetlink
message, so we use its message classes for that. Its IPRoute front-end,
however, runs an asyncio loop per socket and spends 1-2 ms per request in
Python, which is most of a CNI ADD's budget. So requests are built as plain
data (messages.py), sent in batches on a raw socket (channel.py), one write
per batch, with the acks read back, and a socket for another network
namespace is opened from a thread that entered it for that instant
(netns.py).
"""
