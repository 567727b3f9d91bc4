"""A proxy source a test drives: it hands the Proxier the changes of the
objects it is given, when it is given them (the sources' interface:
netplane/proxy/sources.py)."""
from netplane.kube.changes import Change, object_key


class DrivenSource:
    def __init__(self):
        self.ready, self.objects = False, {"Service": {}, "EndpointSlice": {}}
        self.on_events = lambda changes: None

    def put(self, *objs):
        changes = []
        for obj in objs:
            kind, key = obj["kind"], object_key(obj)
            changes.append(Change(kind, key, self.objects[kind].get(key), obj))
            self.objects[kind][key] = obj
        self.ready = True
        self.on_events(changes)
