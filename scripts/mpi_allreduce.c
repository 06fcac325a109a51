/* MPI collective timer with shoal bench's rules (cmd/shoal/bench_coll.go), for
 * scripts/bench-vs-mpi.sh: sizes from MIN to MAX bytes times FACTOR, float32 sum, WARMUP
 * untimed operations, then REPEATS timed runs of iters(bytes) operations each, started after a
 * barrier; a run's time is the slowest rank's (MPI_MAX), the row shows the median run.
 * Columns: bytes time_us algbw busbw (nccl-tests definitions). Usage:
 *   mpi_allreduce OP MIN MAX FACTOR REPEATS WARMUP     (OP: allreduce, allgather, reducescatter) */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int iters(long bytes) {
  long b = bytes > 1 ? bytes : 1;
  long n = (64L << 20) / b;
  if (n > 200) n = 200;
  if (n < 2) n = 2;
  return (int)n;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (argc != 7) {
    fprintf(stderr, "usage: %s OP MIN MAX FACTOR REPEATS WARMUP\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const char *op = argv[1];
  long minb = atol(argv[2]), maxb = atol(argv[3]);
  int factor = atoi(argv[4]), repeats = atoi(argv[5]), warmup = atoi(argv[6]);
  int rank, n;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  if (rank == 0) {
    printf("# mpi %s: %d ranks, float32, %d repeats (median), time = slowest rank\n", op, n, repeats);
    printf("%12s %12s %10s %10s\n", "bytes", "time_us", "algbw", "busbw");
  }
  double *times = calloc(repeats, sizeof(double));
  int ar = !strcmp(op, "allreduce"), ag = !strcmp(op, "allgather");
  for (long bytes = minb; bytes <= maxb; bytes *= factor) {
    long unit = ar ? 4 : 4L * n;
    long s = bytes / unit * unit;
    if (s < unit) s = unit;
    long count = s / 4;
    float *a = calloc(count, 4), *b = calloc(count, 4);
    int it = iters(s);
    for (int r = -1; r < repeats; r++) {
      int k = r < 0 ? warmup : it;
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      for (int i = 0; i < k; i++) {
        if (ar)
          MPI_Allreduce(a, b, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        else if (ag)
          MPI_Allgather(a, (int)(count / n), MPI_FLOAT, b, (int)(count / n), MPI_FLOAT, MPI_COMM_WORLD);
        else
          MPI_Reduce_scatter_block(a, b, (int)(count / n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      }
      double dt = (MPI_Wtime() - t0) / k, mx;
      MPI_Allreduce(&dt, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (r >= 0) times[r] = mx;
    }
    qsort(times, repeats, sizeof(double), cmp);
    double t = times[repeats / 2], algbw = (double)s / t / 1e9;
    double f = ar ? 2.0 * (n - 1) / n : (double)(n - 1) / n;
    if (rank == 0) printf("%12ld %12.2f %10.3f %10.3f\n", s, t * 1e6, algbw, algbw * f);
    fflush(stdout);
    free(a);
    free(b);
  }
  MPI_Finalize();
  return 0;
}
