/* main.c - PLACEHOLDER entry point, being written. */
#include <stdio.h>
int main(void) { puts("omikuji-keyfs " KEYFS_VERSION); return 0; }
