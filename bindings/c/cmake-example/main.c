/* Checks that the library found by CMake matches the header it was built with. */
#include <fal_realtime.h>

#include <stdio.h>
#include <string.h>

int main(void) {
    const char *version = fal_rt_version();
    unsigned number = (unsigned)fal_rt_version_number();
    printf("fal-realtime %s (%u), header %s (%u)\n", version, number, FAL_RT_VERSION_STRING,
           (unsigned)FAL_RT_VERSION_NUMBER);
    if (strcmp(version, FAL_RT_VERSION_STRING) != 0 || number != FAL_RT_VERSION_NUMBER) {
        fprintf(stderr, "library and header versions differ\n");
        return 1;
    }
    return 0;
}
