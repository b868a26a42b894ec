"""guard_data.py - inputs of bench/bench_guard.c: a registry directory (a
copy of schemas/), config/veil.yaml as shipped with and without the leak
guard (bench/e2e.py's own edits, so both benchmarks measure the same
configuration), and the end-to-end benchmark's records (free-text notes
with dense PII) as length-prefixed framed values.

    guard_data.py DIR VEIL   ->  DIR/{reg/,off.yaml,on.yaml,values.bin}
"""
import os
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402


def main():
    out, veil = sys.argv[1], sys.argv[2]
    reg = os.path.join(out, "reg")
    shutil.copytree(os.path.join(e2e.REPO, "schemas"), reg)
    shipped = e2e.shipped_config()
    for name, guard in (("off", False), ("on", True)):
        path = os.path.join(out, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(e2e.veil_config(shipped, "127.0.0.1:1", reg, "vg", "customers",
                                    e2e.free_port(), guard=guard))
    # `veil check` registers the schemas in the file registry (ids), as
    # the end-to-end bench's worker does
    subprocess.run([veil, "check", "-c", os.path.join(out, "off.yaml")], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "values.bin"), "wb") as f:
        for v in e2e.templates(reg):
            f.write(struct.pack("<I", len(v)))
            f.write(v)


if __name__ == "__main__":
    main()
