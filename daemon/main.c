/* main.c — vaegand (placeholder until the daemon lands). */
#include <stdio.h>
int main(void) { puts("vaegand 0.1.0"); return 0; }
