#!/bin/sh
set -e
cd "$(dirname "$0")"
gcc -m32 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -O2 -nostdlib -c k.c -o k.o
gcc -m32 -fno-pic -c entry.S -o entry.o
ld -m elf_i386 -T link.ld -nostdlib -o k32.elf entry.o k.o
objcopy -O elf64-x86-64 k32.elf k.elf
