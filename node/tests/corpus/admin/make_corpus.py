#!/usr/bin/env python3
"""Regenerates the admin API bad-input corpus (run in this directory). See ../README.md."""
import glob
import json
import os

CALLER = {"clusterUid": "fuzz-cluster", "epoch": "1", "migrationUid": "m1", "attempt": "1"}
RANGES = [{"start": "0", "end": "1000"}]
EP = {"name": "a", "dataAddr": "127.0.9.1:6379", "adminAddr": "127.0.9.1:8080"}
PLACEMENT = {
    "placement": {"clusterUid": "fuzz-cluster", "epoch": "1",
                  "base": {"algorithm": 1, "vnodes": 16, "ops": [{"op": "join", "member": "a", "weight": 1}]}},
    "members": [EP],
    "writePauseBudgetMs": "1500",
}
VALID = {
    "caller": CALLER,
    "placement": PLACEMENT,
    "fence": {"caller": CALLER, "ranges": RANGES},
    "unfence": {"caller": CALLER},
    "drop": {"caller": CALLER, "ranges": RANGES, "ownershipEndedEpoch": "1"},
    "checksum": {"ranges": RANGES},
    "pull": {"caller": CALLER, "source": EP, "ranges": RANGES},
    "snapshot": {"caller": CALLER, "ranges": RANGES},
}
rows = []


def put(name, body, expect, raw=False):
    with open(name, "wb") as f:
        f.write(body if raw else json.dumps(body).encode())
    rows.append((name, expect))


def copy(v):
    return json.loads(json.dumps(v))


for old in glob.glob("*.json"):
    os.remove(old)

for t, b in VALID.items():
    put(f"{t}.ok.valid.json", b, "ok")
    x = dict(b); x["surprise"] = 1
    put(f"{t}.err.unknown-field.json", x, "unknown field `surprise`")
    for k in b:
        x = dict(b); del x[k]
        put(f"{t}.err.missing-{k}.json", x, f"missing field `{k}`")
    put(f"{t}.err.null.json", None, "invalid type: null")
    put(f"{t}.err.array.json", [b], "")
    put(f"{t}.err.not-json.json", b"{not json", "key must be a string", raw=True)
    put(f"{t}.err.empty.json", b"", "EOF while parsing", raw=True)
    put(f"{t}.err.trailing-garbage.json", json.dumps(b).encode() + b" x", "trailing characters", raw=True)

put("caller.err.deep-array-nesting.json", b"[" * 5000 + b"]" * 5000, "", raw=True)
put("placement.err.deep-object-nesting.json", b'{"placement":' * 5000 + b"1" + b"}" * 5000,
    "", raw=True)
put("fence.err.deep-nesting-in-ranges.json",
    b'{"caller":' + json.dumps(CALLER).encode() + b',"ranges":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "", raw=True)
put("checksum.err.deep-nesting-in-unknown-field.json", b'{"ranges":[],"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "", raw=True)


def c(**kw):
    x = dict(CALLER); x.update(kw); return x


put("caller.err.epoch-overflow.json", c(epoch="18446744073709551616"), "invalid u64 string")
put("caller.err.epoch-negative-string.json", c(epoch="-1"), "invalid u64 string")
put("caller.err.epoch-negative-number.json", c(epoch=-1), "negative value -1")
put("caller.err.epoch-float.json", c(epoch=1.5), "invalid type: floating point")
put("caller.err.epoch-huge-number.json",
    b'{"clusterUid":"fuzz-cluster","epoch":1000000000000000000000000000000,"migrationUid":"m1","attempt":"1"}',
    "invalid type: floating point", raw=True)
put("caller.err.epoch-exponent.json",
    b'{"clusterUid":"fuzz-cluster","epoch":1e400,"migrationUid":"m1","attempt":"1"}',
    "number out of range", raw=True)
put("caller.err.epoch-bool.json", c(epoch=True), "invalid type: boolean")
put("caller.err.epoch-hex.json", c(epoch="0x10"), "invalid u64 string")
put("caller.err.epoch-padded.json", c(epoch=" 1"), "invalid u64 string")
put("caller.ok.epoch-max.json", c(epoch="18446744073709551615"), "ok")
put("caller.ok.epoch-as-number.json", c(epoch=7), "ok")
put("caller.err.uid-number.json", c(clusterUid=5), "invalid type: integer")
put("caller.err.uid-object.json", c(clusterUid={"a": 1}), "invalid type: map")
put("caller.err.duplicate-field.json",
    b'{"clusterUid":"a","clusterUid":"b","epoch":"1","migrationUid":"m1","attempt":"1"}',
    "duplicate field `clusterUid`", raw=True)
put("caller.err.invalid-utf8.json",
    b'{"clusterUid":"\xff\xfe","epoch":"1","migrationUid":"m1","attempt":"1"}', "invalid unicode", raw=True)
put("caller.err.lone-surrogate.json",
    b'{"clusterUid":"\\ud800","epoch":"1","migrationUid":"m1","attempt":"1"}', "hex escape", raw=True)
put("caller.ok.long-strings.json", c(clusterUid="u" * 100000, migrationUid="m" * 100000), "ok")


def f(ranges):
    return {"caller": CALLER, "ranges": ranges}


put("fence.err.range-reversed.json", f([{"start": "10", "end": "1"}]), "start")
put("fence.err.range-overflow.json", f([{"start": "0", "end": "18446744073709551616"}]), "invalid u64 string")
put("fence.err.range-missing-end.json", f([{"start": "0"}]), "missing field `end`")
put("fence.err.range-not-object.json", f(["0-10"]), "invalid type: string")
put("fence.ok.range-full-space.json", f([{"start": "0", "end": "18446744073709551615"}]), "ok")
put("fence.ok.empty-ranges.json", f([]), "ok")
put("fence.ok.many-ranges.json", f([{"start": str(i * 10), "end": str(i * 10 + 5)} for i in range(5000)]), "ok")


def p(**kw):
    x = copy(PLACEMENT); x["placement"].update(kw); return x


def ring(vnodes, ops, algorithm=1):
    return {"algorithm": algorithm, "vnodes": vnodes, "ops": ops}


put("placement.ok.vnodes-zero.json", p(base=ring(0, [])), "ok")
put("placement.err.vnodes-too-big-for-u16.json", p(base=ring(70000, [])), "invalid value")
put("placement.ok.unknown-algorithm.json", p(base=ring(16, [], algorithm=99)), "ok")
put("placement.err.unknown-op.json", p(base=ring(16, [{"op": "explode", "member": "a"}])),
    "unknown variant `explode`")
put("placement.err.weight-negative.json", p(base=ring(16, [{"op": "join", "member": "a", "weight": -1}])),
    "invalid value")
put("placement.err.weight-overflow.json",
    p(base=ring(16, [{"op": "join", "member": "a", "weight": 4294967296}])), "invalid value")
put("placement.ok.weight-max.json",
    p(base=ring(1024, [{"op": "join", "member": "a", "weight": 4294967295},
                       {"op": "join", "member": "b", "weight": 1}])), "ok")
put("placement.ok.empty-ring.json", p(base=ring(16, [])), "ok")
put("placement.ok.duplicate-join.json",
    p(base=ring(16, [{"op": "join", "member": "a", "weight": 1}, {"op": "join", "member": "a", "weight": 1}])), "ok")
put("placement.ok.leave-unknown.json", p(base=ring(16, [{"op": "leave", "member": "zz"}])), "ok")
put("placement.ok.bad-committed.json", p(committed=[{"source": "a", "targets": ["nobody"]}]), "ok")
put("placement.err.overlay-range-reversed.json", p(overlay=[{"owner": "a", "ranges": "9-1"}]), "")
put("placement.ok.many-heavy-members.json",
    p(base=ring(1024, [{"op": "join", "member": f"m{i}", "weight": 100000} for i in range(1000)])), "ok")
x = copy(PLACEMENT); x["writePauseBudgetMs"] = "18446744073709551615"
put("placement.ok.huge-write-pause-budget.json", x, "ok")
x = copy(PLACEMENT); x["members"] = [{"name": "a", "dataAddr": "not an address", "adminAddr": "::::"}]
put("placement.ok.bad-addresses.json", x, "ok")
x = copy(PLACEMENT); x["ownersDigest"] = "123"
put("placement.ok.wrong-digest.json", x, "ok")
x = copy(PLACEMENT); x["ownersDigest"] = 12.5
put("placement.err.digest-float.json", x, "invalid type: floating point")
x = copy(PLACEMENT); x["placement"]["epoch"] = "0"
put("placement.ok.epoch-zero.json", x, "ok")
x = copy(VALID["pull"]); x["bytesPerSec"] = "0"
put("pull.ok.zero-bandwidth.json", x, "ok")
x = copy(VALID["pull"]); x["verify"] = "yes"
put("pull.err.verify-string.json", x, "invalid type: string")
x = copy(VALID["pull"]); x["source"] = dict(EP, token="x")
put("pull.err.source-unknown-field.json", x, "unknown field `token`")

with open("cases.tsv", "w") as fh:
    fh.write("# file<TAB>expected parse: ok, or a substring of the 400 error message (empty: any error)\n")
    for n, e in rows:
        fh.write(f"{n}\t{e}\n")
