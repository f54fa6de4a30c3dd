#!/bin/sh
# usage: run.sh NAME MODE [extra qemu args...]   (machine as tests/src/qemu.rs builds it, minus -no-reboot)
# Build the probe first: ./build.sh (needs gcc with -m32 and binutils). Logs go to $OUT (default ./out, which must exist).
name=$1; mode=$2; shift 2
start=$(date +%s.%N)
timeout -s KILL 15 qemu-system-x86_64 -machine microvm,auto-kernel-cmdline=off${PCIE:+,pcie=on} \
  -cpu qemu64,+svm,+npt,+pdpe1gb -m ${MEM:-512M} -display none -serial stdio \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -kernel "$(dirname "$0")/k.elf" -append "mode=$mode" "$@" < /dev/null > "${OUT:-out}/$name.log" 2> "${OUT:-out}/$name.err"
rc=$?
end=$(date +%s.%N)
echo "$name: exit $rc, $(echo "$end - $start" | bc) s" | tee -a "${OUT:-out}/$name.log"
