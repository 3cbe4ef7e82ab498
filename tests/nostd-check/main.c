/* Links the no_std static library libpvm_nostd_check.a and checks its one
 * export: pvm_nostd_run(n) runs a PVM program summing 1..=n in pvm-core's
 * interpreter. Exits 0 if the results are right, 1 otherwise. */
#include <stdint.h>
#include <stdio.h>

uint64_t pvm_nostd_run(uint64_t n);

static int check(uint64_t n, uint64_t want) {
    uint64_t got = pvm_nostd_run(n);
    if (got != want) {
        printf("pvm-nostd-check: FAIL: pvm_nostd_run(%llu) = %llu, want %llu\n",
               (unsigned long long)n, (unsigned long long)got, (unsigned long long)want);
        return 1;
    }
    return 0;
}

int main(void) {
    int bad = 0;
    bad |= check(10, 55);
    bad |= check(0, 0);
    bad |= check(1000, 500500);
    /* Repeated runs: the static heap is reused, it must not run out. */
    for (int i = 0; i < 1000 && !bad; i++) {
        bad |= check(10, 55);
    }
    if (bad) {
        return 1;
    }
    printf("pvm-nostd-check: OK: pvm_nostd_run(10) = 55 (PVM interpreter in a no_std staticlib, "
           "called from C)\n");
    return 0;
}
