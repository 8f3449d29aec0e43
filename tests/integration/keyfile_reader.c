/* keyfile_reader.c - the two C readers of a key file that issue 9 item 11
 * and issue 13 item 3 are about, for the integration tests:
 *
 *   keyfile_reader mmap PATH    open, mmap(4096, MAP_PRIVATE), copy the bytes
 *                               up to the first NUL (no fstat)
 *   keyfile_reader fstat PATH   open, fstat, one read(st_size)
 *
 * The bytes read go to stdout; "size N" (fstat) goes to stderr.  A SIGBUS
 * kills the reader, which the test sees as the signal. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, p, n);
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: keyfile_reader mmap|fstat PATH\n");
		return 2;
	}
	int fd = open(argv[2], O_RDONLY);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	if (strcmp(argv[1], "mmap") == 0) {
		const char *map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		size_t n = 0;
		while (n < 4096 && map[n])   /* the page past the end of the key reads as zeros */
			n++;
		if (write_all(map, n) < 0)
			return 1;
		munmap((void *)map, 4096);
	} else if (strcmp(argv[1], "fstat") == 0) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			perror("fstat");
			return 1;
		}
		fprintf(stderr, "size %lld\n", (long long)st.st_size);
		char *buf = malloc((size_t)st.st_size + 1);
		ssize_t got = buf ? read(fd, buf, (size_t)st.st_size) : -1;
		if (got < 0) {
			perror("read");
			return 1;
		}
		if (write_all(buf, (size_t)got) < 0)
			return 1;
		free(buf);
	} else {
		fprintf(stderr, "unknown mode %s\n", argv[1]);
		return 2;
	}
	close(fd);
	return 0;
}
