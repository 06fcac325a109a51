// Package slurm reads a Slurm allocation the way Slurm 22.05 writes it.
//
// It has three parts, all pure functions with no I/O besides [FromOS]:
//
//   - Hostlists. [Expand] turns a hostlist such as "rack[1-2]-node[01-02],login1" into the
//     host names `scontrol show hostnames` prints, in the same order; [Compress] turns a list of
//     names back into the string `scontrol show hostlist` prints for them. For every list of
//     valid host names (see [Compress]), Expand(Compress(names)) returns names again.
//   - Compressed counts. [ExpandCounts] reads SLURM_JOB_CPUS_PER_NODE and
//     SLURM_TASKS_PER_NODE ("2(x3),1" is 2, 2, 2, 1).
//   - The job environment. [ParseEnv] reads the SLURM_* variables of a batch script, an
//     salloc shell or an srun task into an [Env]; [Scrub] removes the per-task variables before
//     a process that is not a Slurm task is started, so that it does not believe it is rank 0.
//
// The grammar accepted is Slurm 22.05's, made stricter where 22.05 accepts input it then
// misreads. Every input that `scontrol show hostnames` rejects is rejected here too, and
// every input accepted here expands to exactly what scontrol prints, with one exception: a
// name outside brackets whose numeric suffix does not fit in 64 bits ("n99999999999999999999")
// is kept as written, where 22.05 clamps it to 18446744073709551615. Rejected on purpose,
// although 22.05 accepts them:
//
//   - unbalanced or nested brackets ("a[1", "a]1", "a[b[1-2]"), which 22.05 patches up
//     into names that were never meant ("a[1" becomes "a]");
//   - whitespace, signs or an empty bound inside brackets ("n[ 1-3]", "n[+1]", "n[1-]"),
//     which 22.05 reads with strtoul and turns into odd zero padding;
//   - numbers in brackets that do not fit in 64 bits, which 22.05 clamps the same way;
//   - control characters, including newlines, which 22.05 keeps inside host names;
//   - a bracketed name that expands to more than [MaxRange] names in total, and a hostlist of
//     more than [MaxNames] names. 22.05 limits each range and each bracket before the last
//     to [MaxRange] hosts, but not their product ("a[1-2000]b[1-2000]" is 4 million names)
//     nor the list; no real allocation comes near either limit.
//
// Like 22.05, and unlike Slurm 23.11 and later, a name may not go on after its last bracket
// ("gpu[1-2]-ib" is an error).
//
// Errors from the hostlist and count parsers wrap [ErrHostlist] and [ErrCounts]; errors from
// [ParseEnv] wrap [ErrNotInJob] (a variable a job always has is missing) or [ErrInvalidEnv]
// (a variable holds something Slurm never writes). All functions are safe for concurrent use;
// an [Env] is read-only once parsed.
package slurm
