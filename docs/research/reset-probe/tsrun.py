#!/usr/bin/env python3
# Runs a command, prefixes each stdout line with seconds since start (host time).
import subprocess, sys, time
t0 = time.time()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
for line in p.stdout:
    l = line.decode(errors="replace").rstrip()
    if l.startswith("feas18") or l.startswith("esb"):
        print(f"{time.time()-t0:7.3f} {l}")
print(f"{time.time()-t0:7.3f} exit {p.wait()}")
