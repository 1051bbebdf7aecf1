/* Size image (template, NAME as in main.c): the same startup with and without one call of
 * NAME_predict (-DWITH_MODEL). The difference of the two linked images' sections is what
 * the model costs on its own: its code and tables and the library code it pulls in
 * (libm's expf/log1pf, libgcc's soft-float helpers on the Cortex-M3). */
#include "NAME.h"

float NAME_input[NAMEUP_N_INPUTS];
volatile float NAME_sink;

int main(void)
{
#ifdef WITH_MODEL
    NAME_sink = NAME_predict(NAME_input);
#else
    NAME_sink = NAME_input[0]; /* the same input and output variables in both images */
#endif
    return 0;
}
