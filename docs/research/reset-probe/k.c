/* feas18 test kernel: does RAM survive a watchdog / triple-fault reset under
 * QEMU microvm + qboot + PVH -kernel?  Boot 0 fills RAM with an
 * address-dependent pattern, leaves a marker at 16 MiB and CMOS bytes, then
 * resets the machine (mode from the command line: mode=i ib700, mode=e
 * i6300esb, mode=t triple fault).  Boot 1 (marker found) reports every 4 KiB
 * page whose contents changed, the kernel's .data/.bss, the start_info and
 * memory map, CMOS, and exits through isa-debug-exit. */
typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32;
typedef unsigned long long u64;

struct start_info { u32 magic, version, flags, nr_modules; u32 modlist_paddr, modlist_hi;
  u32 cmdline_paddr, cmdline_hi, rsdp_lo, rsdp_hi, memmap_lo, memmap_hi, memmap_entries, reserved; };
struct mm_entry { u64 addr, size; u32 type, reserved; };
struct mod_entry { u64 paddr, size, cmdline; u64 reserved; };

static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0,%1" :: "a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1,%0" : "=a"(v) : "Nd"(p)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }
extern char image_start[], image_end[];
extern void triple_fault(void);

static void putc(char c) { while (!(inb(0x3f8 + 5) & 0x20)) {} outb(0x3f8, c); }
static void puts(const char *s) { while (*s) { if (*s == '\n') putc('\r'); putc(*s++); } }
static void hex(u64 v, int digits) { for (int i = digits - 1; i >= 0; i--) putc("0123456789abcdef"[(v >> (4 * i)) & 15]); }
static void h32(u32 v) { puts("0x"); hex(v, 8); }
static void h64(u64 v) { puts("0x"); hex(v, 16); }

static u8 cmos_rd(u8 r) { outb(0x70, r | 0x80); return inb(0x71); }
static void cmos_wr(u8 r, u8 v) { outb(0x70, r | 0x80); outb(0x71, v); }

#define MARKER_ADDR 0x1000000u   /* 16 MiB */
#define MAGIC 0x38315341u        /* "AS18" */
struct marker { u32 magic, boots; u32 ram_end, memmap_sum, memmap_entries, si_addr, memmap_lo, cmdline;
  u32 nr_modules, mod_paddr, mod_size; char mode; };

static inline u32 pattern(u32 addr) { return (addr * 2654435761u) ^ 0x5a5aa5a5u; }

volatile u32 data_var = 0x11111111;
volatile u32 bss_var;
volatile u32 bss_arr[16384];   /* 64 KiB */

static u32 sum_memmap(struct mm_entry *m, u32 n) {
  u32 s = 0; u32 *w = (u32 *)m;
  for (u32 i = 0; i < n * sizeof(*m) / 4; i++) s = s * 31 + w[i];
  return s;
}

/* ranges that are filled on boot 0 and checked on boot 1 */
static u32 lo_start = 0x1000, lo_end = 0xa0000;
static u32 hi_start(void) { return ((u32)image_end + 0xfff) & ~0xfffu; }

static void fill(u32 a, u32 b) {
  for (u32 p = a; p < b; p += 4) {
    if (p >= MARKER_ADDR && p < MARKER_ADDR + 4096) continue;
    *(volatile u32 *)p = pattern(p);
  }
}
static void check(u32 a, u32 b) {
  u32 run_start = 0, in_run = 0, bad_pages = 0;
  for (u32 pg = a; pg < b; pg += 4096) {
    int bad = 0;
    if (!(pg == MARKER_ADDR))
      for (u32 p = pg; p < pg + 4096; p += 4) if (*(volatile u32 *)p != pattern(p)) { bad = 1; break; }
    if (bad) { bad_pages++; if (!in_run) { in_run = 1; run_start = pg; } }
    if ((!bad || pg + 4096 >= b) && in_run) {
      u32 end = bad ? pg + 4096 : pg;
      puts("  changed: "); h32(run_start); puts("-"); h32(end); puts("\n"); in_run = 0;
    }
  }
  puts("  range "); h32(a); puts("-"); h32(b); puts(": changed pages "); hex(bad_pages, 8); puts("\n");
}

/* PCI ECAM (microvm,pcie=on): bus 0 at 0xe0000000 */
static volatile u8 *cfg(u32 dev, u32 off) { return (volatile u8 *)(0xe0000000u + (dev << 15) + off); }
static int find_esb(void) {
  for (u32 d = 0; d < 32; d++) { u32 id = *(volatile u32 *)cfg(d, 0); if (id == 0x25ab8086u) return d; }
  return -1;
}
#define ESB_BAR 0xc0100000u
static int esb_setup(void) {
  int d = find_esb();
  puts("esb: device "); hex(d, 8); puts("\n");
  if (d < 0) return -1;
  *(volatile u32 *)cfg(d, 0x10) = ESB_BAR;
  *(volatile u16 *)cfg(d, 4) |= 2;   /* memory decoding */
  puts("esb: BAR0 "); h32(*(volatile u32 *)cfg(d, 0x10));
  puts(" cfg60 "); hex(*(volatile u16 *)cfg(d, 0x60), 4);
  puts(" lock68 "); hex(*(volatile u8 *)cfg(d, 0x68), 2);
  puts(" reload(0xc) "); hex(*(volatile u16 *)(ESB_BAR + 0xc), 4); puts("\n");
  return d;
}

static int has(const char *c, const char *w) {
  for (; c && *c; c++) { const char *a = c, *b = w; while (*b && *a == *b) { a++; b++; } if (!*b) return 1; }
  return 0;
}
static u32 parse_mode(const char *c) {
  for (; c && *c; c++) if (c[0] == 'm' && c[1] == 'o' && c[2] == 'd' && c[3] == 'e' && c[4] == '=') return c[5];
  return 'n';
}

void kmain(struct start_info *si) {
  outb(0x3f8 + 1, 0); outb(0x3f8 + 3, 3);
  struct marker *mk = (struct marker *)MARKER_ADDR;
  int warm = mk->magic == MAGIC;
  puts("\nfeas18: boot, marker "); puts(warm ? "FOUND" : "absent"); puts(", boots="); hex(warm ? mk->boots : 0, 2);
  puts(", start_info at "); h32((u32)si); puts(" magic "); h32(si->magic); puts("\n");
  puts("  cmdline @"); h32(si->cmdline_paddr); puts(" '"); puts((char *)si->cmdline_paddr); puts("'\n");
  puts("  memmap @"); h32(si->memmap_lo); puts(" entries "); hex(si->memmap_entries, 2);
  puts(" modules "); hex(si->nr_modules, 2); puts(" modlist @"); h32(si->modlist_paddr); puts("\n");
  struct mm_entry *mm = (struct mm_entry *)si->memmap_lo;
  u32 ram_end = 0;
  for (u32 i = 0; i < si->memmap_entries && i < 32; i++) {
    puts("    "); h64(mm[i].addr); puts(" +"); h64(mm[i].size); puts(" type "); hex(mm[i].type, 1); puts("\n");
    if (mm[i].type == 1 && mm[i].addr + mm[i].size <= 0x100000000ull && mm[i].addr + mm[i].size > ram_end)
      ram_end = (u32)(mm[i].addr + mm[i].size);
  }
  u32 mod_paddr = 0, mod_size = 0;
  if (si->nr_modules) { struct mod_entry *me = (struct mod_entry *)si->modlist_paddr; mod_paddr = me->paddr; mod_size = me->size;
    puts("  module 0: "); h32(mod_paddr); puts(" size "); h32(mod_size); puts(" first dword "); h32(*(u32 *)mod_paddr); puts("\n"); }
  u32 msum = sum_memmap(mm, si->memmap_entries);
  puts("  image "); h32((u32)image_start); puts("-"); h32((u32)image_end); puts(" ram_end "); h32(ram_end);
  puts(" memmap sum "); h32(msum); puts("\n");
  puts("  .data var "); h32(data_var); puts(" .bss var "); h32(bss_var); puts(" .bss arr[0],[8191] "); h32(bss_arr[0]); puts(" "); h32(bss_arr[8191]); puts("\n");
  puts("  CMOS 0x0e-0x7f:");
  for (u32 r = 0x0e; r < 0x80; r++) { if ((r & 15) == 0) puts("\n   "); putc(' '); hex(cmos_rd(r), 2); }
  puts("\n");
  u32 mode = parse_mode((char *)si->cmdline_paddr);
  int nofill = mode >= 'A' && mode <= 'Z';   /* upper case: no RAM fill/check (fast runs) */
  if (nofill) mode += 'a' - 'A';

  if (!warm) {
    if (cmos_rd(0x7e) == 0xa5) { puts("feas18: CMOS says we reset before but the RAM marker is gone: RAM LOST\n"); outb(0xf4, 0x21); }
    mk->magic = MAGIC; mk->boots = 1; mk->ram_end = ram_end; mk->memmap_sum = msum; mk->memmap_entries = si->memmap_entries;
    mk->si_addr = (u32)si; mk->memmap_lo = si->memmap_lo; mk->cmdline = si->cmdline_paddr; mk->nr_modules = si->nr_modules;
    mk->mod_paddr = mod_paddr; mk->mod_size = mod_size; mk->mode = mode;
    data_var = 0xdeadbeef; bss_var = 0xcafebabe;
    for (u32 i = 0; i < 16384; i++) bss_arr[i] = 0x77777777;
    cmos_wr(0x7e, 0xa5); cmos_wr(0x0f, 0x00);
    u64 t0 = rdtsc();
    if (has((char *)si->cmdline_paddr, "nolow")) lo_end = lo_start;   /* leave low RAM alone */
    if (!nofill) { fill(lo_start, lo_end); fill(hi_start(), ram_end); }
    puts("feas18: filled "); h32(lo_start); puts("-"); h32(lo_end); puts(" and "); h32(hi_start()); puts("-"); h32(ram_end);
    puts(" in "); hex((rdtsc() - t0) >> 20, 8); puts(" Mcycles\n");
    if (mode == 'i') {
      puts("feas18: arming ib700 (outb 0x443, 0x0e = 2 s) and hanging\n");
      outb(0x443, 0x0e);
    } else if (mode == 'e') {
      int d = esb_setup();
      if (d < 0) outb(0xf4, 0x22);
      *(volatile u16 *)cfg(d, 0x60) = 0x04;                 /* 1 MHz scale, reboot enabled, int type 0 */
      *(volatile u8 *)(ESB_BAR + 0xc) = 0x80; *(volatile u8 *)(ESB_BAR + 0xc) = 0x86;
      *(volatile u32 *)(ESB_BAR + 0) = 500000;               /* stage 1: 500000 << 5 * 30 ns = 0.48 s */
      *(volatile u8 *)(ESB_BAR + 0xc) = 0x80; *(volatile u8 *)(ESB_BAR + 0xc) = 0x86;
      *(volatile u32 *)(ESB_BAR + 4) = 500000;               /* stage 2 */
      *(volatile u8 *)cfg(d, 0x68) = 0x02;                   /* enable */
      puts("feas18: i6300esb armed: cfg60 "); hex(*(volatile u16 *)cfg(d, 0x60), 4); puts(" lock68 "); hex(*(volatile u8 *)cfg(d, 0x68), 2);
      puts("; hanging\n");
    } else if (mode == 't') {
      puts("feas18: triple fault now\n");
      triple_fault();
    } else if (mode == 'p') {
      puts("feas18: ib700 ping test: arm 2 s, re-arm every ~0.5 s for ~5 s (by PIT-less tsc), then disarm and exit\n");
      outb(0x443, 0x0e);
      for (int k = 0; k < 10; k++) { u64 t = rdtsc(); while (rdtsc() - t < 1000000000ull) {} outb(0x443, 0x0e); putc('.'); }
      outb(0x441, 0); puts("\nfeas18: disarmed; waiting ~3 s more\n");
      { u64 t = rdtsc(); while (rdtsc() - t < 6000000000ull) {} }
      puts("feas18: still alive, exit\n"); outb(0xf4, 0x10);
    }
    for (;;) __asm__ volatile("cli; hlt");
  }

  puts("feas18: WARM boot "); hex(mk->boots, 2); puts(" after mode "); putc(mk->mode); puts("\n");
  puts("  start_info same addr? "); puts(mk->si_addr == (u32)si ? "yes" : "NO");
  puts("; memmap same (sum, entries, addr)? "); puts(mk->memmap_sum == msum && mk->memmap_entries == si->memmap_entries && mk->memmap_lo == si->memmap_lo ? "yes" : "NO");
  puts("; cmdline same addr? "); puts(mk->cmdline == si->cmdline_paddr ? "yes" : "NO"); puts("\n");
  if (mk->nr_modules) { puts("  module was at "); h32(mk->mod_paddr); puts(" size "); h32(mk->mod_size); puts("\n"); }
  if (mk->mode == 'e') { int d = esb_setup(); (void)d; }
  puts("feas18: checking patterns\n");
  if (has((char *)si->cmdline_paddr, "nolow")) lo_end = lo_start;
  if (!nofill) { check(lo_start, lo_end); check(hi_start(), mk->ram_end); }
  mk->boots++;
  mk->magic = 0;   /* next run starts cold */
  cmos_wr(0x7e, 0);
  puts("feas18: done\n");
  outb(0xf4, 0x10);   /* exit status 0x21 */
  for (;;) __asm__ volatile("cli; hlt");
}
