/* Device harness (template: NAME and NAMEUP become the export's name, as written and in
 * capitals): runs NAME_predict on every vector of NAME_vectors.h and prints, through
 * semihosting,
 *
 *   tick N                 SysTick ticks of a calibration loop of 2,000,000 instructions
 *   p I BITS               the float32 bits of the prediction of vector I (hex)
 *   stack BYTES            the deepest stack use of one NAME_predict call (stack painting)
 *   time MODEL EMPTY       SysTick ticks of the loop over all vectors calling NAME_predict,
 *                          and of the same loop calling an empty function
 *
 * Under qemu-system-arm -icount shift=0, virtual time advances 1 ns per instruction and
 * SysTick counts the 25 MHz board clock, so a tick is 40 instructions; the calibration loop
 * measures that ratio rather than assuming it. Instructions per inference are
 * (MODEL - EMPTY) x (2,000,000 / N) / vectors (tests/helpers/device_harness.py).
 */
#include <stdio.h>
#include <string.h>

#include "NAME.h"
#include "NAME_vectors.h"

#define SYST_CSR (*(volatile unsigned long *)0xE000E010UL)
#define SYST_RVR (*(volatile unsigned long *)0xE000E014UL)
#define SYST_CVR (*(volatile unsigned long *)0xE000E018UL)
#define RELOAD 0xFFFFFFUL
#define PAINT 0xC5C5C5C5UL
#define PAINT_WORDS 8192 /* 32 KiB painted below the caller's frame */

typedef float (*predictor)(const float *x);

static volatile unsigned long wraps;

void systick_handler(void);
void systick_handler(void)
{
    ++wraps;
}

/* SysTick ticks since it was started (it counts down from RELOAD, interrupting at 0). */
static unsigned long long ticks(void)
{
    unsigned long w, v;
    do {
        w = wraps;
        v = SYST_CVR;
    } while (w != wraps);
    return (unsigned long long)w * (RELOAD + 1) + (RELOAD - v);
}

__attribute__((noinline)) static float empty(const float *x)
{
    __asm volatile("" ::: "memory");
    return x[0];
}

static float out[NAMEUP_N_VECTORS];

__attribute__((noinline)) static unsigned long long time_all(predictor f)
{
    const unsigned long long t0 = ticks();
    int i;
    for (i = 0; i < NAMEUP_N_VECTORS; ++i) {
        out[i] = f(NAME_VX[i]);
    }
    return ticks() - t0;
}

/* Stack bytes one call of f uses: paint the stack below this frame, call, find the
   deepest word that changed. */
__attribute__((noinline)) static unsigned long stack_use(predictor f, const float *x)
{
    unsigned long *sp;
    volatile unsigned long *w; /* volatile: the loop must not become a call of memset, whose
                                  own frame would lie in the painted region */
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (w = sp - PAINT_WORDS; w < sp; ++w) {
        *w = PAINT;
    }
    out[0] = f(x);
    for (w = sp - PAINT_WORDS; w < sp && *w == PAINT; ++w) {
    }
    return (unsigned long)((char *)sp - (volatile char *)w);
}

int main(void)
{
    volatile predictor model = NAME_predict, none = empty;
    unsigned long long t0, t_model, t_empty;
    unsigned long n = 1000000UL, deepest = 0, bits;
    int i;
    SYST_RVR = RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7; /* processor clock, interrupt, enable */
    while (SYST_CVR == 0) { /* the first reload from 0 is no wrap: wait for it */
    }
    t0 = ticks();
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    printf("tick %llu\n", ticks() - t0);
    for (i = 0; i < NAMEUP_N_VECTORS; ++i) {
        const unsigned long used = stack_use(model, NAME_VX[i]);
        deepest = used > deepest ? used : deepest;
    }
    t_empty = time_all(none);
    t_model = time_all(model);
    for (i = 0; i < NAMEUP_N_VECTORS; ++i) {
        memcpy(&bits, &out[i], sizeof bits);
        printf("p %d %08lx\n", i, bits);
    }
    printf("stack %lu\n", deepest);
    printf("time %llu %llu\n", t_model, t_empty);
    return 0;
}
