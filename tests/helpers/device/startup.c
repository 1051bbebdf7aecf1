/* Minimal Cortex-M startup for the QEMU device harness (tests/helpers/device_harness.py).
 *
 * The vector table (initial stack pointer, reset, the faults, SysTick), and a reset handler
 * that zeroes .bss, turns on the FPU where the build uses one, opens semihosting (newlib's
 * librdimon, linked by --specs=rdimon.specs) and exits through it with main's status, which
 * ends QEMU with that status. The linker script (mps2.ld) places code and read-only data in
 * the MPS2 boards' SSRAM1 at 0x00000000 and data, bss and the stack in SSRAM2/3 at
 * 0x20000000; QEMU loads the ELF there, so there is nothing to copy.
 */
extern unsigned long __bss_start__[], __bss_end__[];
extern char __stack_top[];
extern int main(void);
extern void initialise_monitor_handles(void);
extern void exit(int status);
void reset_handler(void);
void fault_handler(void);
void systick_handler(void) __attribute__((weak, alias("fault_handler")));

typedef void (*handler)(void);

/* Entry 0 is the initial stack pointer, the rest are handlers (0: reserved). */
__attribute__((section(".vectors"), used))
static const handler vectors[16] = {
    (handler)(unsigned long)__stack_top, reset_handler,
    fault_handler, fault_handler, fault_handler, fault_handler, fault_handler, /* NMI..usage */
    0, 0, 0, 0,
    fault_handler, fault_handler, 0, fault_handler, /* SVC, debug monitor, PendSV */
    systick_handler,
};

void reset_handler(void)
{
    unsigned long *p;
    for (p = __bss_start__; p < __bss_end__; ++p) {
        *p = 0;
    }
#if defined(__ARM_FP)
    /* CPACR: full access to the coprocessors CP10 and CP11 (the FPU) */
    *(volatile unsigned long *)0xE000ED88UL |= 0xFUL << 20;
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    initialise_monitor_handles();
    exit(main());
}

/* Any fault ends the run with status 99, which the harness reports. */
void fault_handler(void)
{
    exit(99);
}

/* newlib's exit() runs the init/fini arrays; a bare-metal image has no crti/crtn. */
void _init(void);
void _fini(void);
void _init(void)
{
}
void _fini(void)
{
}
