// The machine's read-bandwidth roof for the decode figures (bench_generate.read_bandwidth):
// THREADS threads each stream through their share of a buffer far larger than the last-level
// cache, XOR-folding it into eight 32-byte accumulators, so the loop does nothing but loads
// (NumPy's sum, used before, topped out below what lfmrt's own decode reads).
//
//   cc -O2 -march=native -pthread bench/read_bandwidth.c -o read_bandwidth
//   ./read_bandwidth THREADS [MIB] [REPEATS]      -> prints the best bytes/s of REPEATS passes
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef uint64_t v4u64 __attribute__((vector_size(32)));

// What every reader shares: the passes, and the barriers each pass starts and ends at.
struct passes {
    int repeats;
    pthread_barrier_t start, done;
};

struct share {
    const v4u64* data;
    size_t count;  // vectors
    struct passes* passes;
    uint64_t sink;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void* reader(void* arg) {
    struct share* s = arg;
    for (int r = 0; r < s->passes->repeats; ++r) {
        pthread_barrier_wait(&s->passes->start);
        v4u64 acc[8] = {{0}};
        for (size_t i = 0; i + 8 <= s->count; i += 8) {
            for (int j = 0; j < 8; ++j) acc[j] ^= s->data[i + j];
        }
        for (int j = 1; j < 8; ++j) acc[0] ^= acc[j];
        s->sink ^= acc[0][0] ^ acc[0][1] ^ acc[0][2] ^ acc[0][3];  // keeps the loads live
        pthread_barrier_wait(&s->passes->done);
    }
    return NULL;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s THREADS [MIB] [REPEATS]\n", argv[0]);
        return 2;
    }
    const int threads = atoi(argv[1]);
    const size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 1024;
    const int repeats = argc > 3 ? atoi(argv[3]) : 5;
    if (threads < 1 || mib < 1 || repeats < 1) {
        fprintf(stderr, "THREADS, MIB and REPEATS must be positive\n");
        return 2;
    }
    const size_t bytes = mib << 20, per_thread = bytes / threads / 256 * 256;
    v4u64* data = aligned_alloc(64, bytes);
    if (data == NULL) {
        fprintf(stderr, "cannot allocate %zu MiB\n", mib);
        return 1;
    }
    memset(data, 0x5a, bytes);  // resident before the first pass

    struct passes passes = {.repeats = repeats};
    pthread_barrier_init(&passes.start, NULL, threads + 1);
    pthread_barrier_init(&passes.done, NULL, threads + 1);
    struct share* shares = calloc(threads, sizeof *shares);
    pthread_t* ids = calloc(threads, sizeof *ids);
    for (int t = 0; t < threads; ++t) {
        shares[t] = (struct share){(const v4u64*)((const char*)data + t * per_thread), per_thread / sizeof(v4u64),
                                   &passes, 0};
        pthread_create(&ids[t], NULL, reader, &shares[t]);
    }
    double best = 0.0;
    for (int r = 0; r < repeats; ++r) {
        pthread_barrier_wait(&passes.start);
        const double t0 = now();
        pthread_barrier_wait(&passes.done);
        const double rate = (double)per_thread * threads / (now() - t0);
        if (rate > best) best = rate;
    }
    uint64_t sink = 0;
    for (int t = 0; t < threads; ++t) {
        pthread_join(ids[t], NULL);
        sink ^= shares[t].sink;
    }
    printf("%.0f\n", best);
    fprintf(stderr, "checksum %llx\n", (unsigned long long)sink);
    pthread_barrier_destroy(&passes.start);
    pthread_barrier_destroy(&passes.done);
    free(ids);
    free(shares);
    free(data);
    return 0;
}
