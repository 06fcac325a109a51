/*
 * shoal_spank.c: a SPANK plugin for Slurm 22.05 that adds `--shoal` to srun, sbatch and salloc.
 *
 *   srun --shoal -N4 --ntasks-per-node=1 python train.py
 *
 * runs `shoal launch -- python train.py` as each task, so the job needs no `shoal launch` in its
 * script; and after every job it runs `shoal admin epilog --job ID` on each node, which removes
 * what the job left of shoal there.
 *
 * plugstack.conf:  optional /usr/lib/shoal/shoal_spank.so shoal=/usr/local/bin/shoal
 *
 * shoal= is required and must be an absolute path: the epilog execs it as root, from whatever
 * directory slurmd is in, so a relative path (or a PATH lookup) would let the directory's owner
 * choose what root runs. Without it the plugin refuses to load (slurm_error says why).
 *
 * The Go runtime does not survive the fork()s slurmstepd makes after loading plugins, so this
 * plugin is plain C and only ever execs the shoal binary: in the task (task_init, just before
 * Slurm's own execve, with the task's environment) and in the epilog (fork + exec + wait).
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <slurm/spank.h>

SPANK_PLUGIN(shoal, 1);

static int use_shoal = 0;
static char shoal_path[4096] = "";

static int opt_cb(int val, const char *optarg, int remote)
{
	(void)val; (void)optarg; (void)remote;
	use_shoal = 1;
	return 0;
}

static struct spank_option shoal_option = {
	"shoal", NULL,
	"Run each task under `shoal launch`: the job's nodes become one shoal cluster, and the "
	"command runs once, on the first node, as its driver.",
	0, 0, opt_cb
};

/* parse_args reads shoal=PATH from the plugstack.conf line; it returns -1, after saying why
 * through Slurm's log, when PATH is missing, relative or too long. */
static int parse_args(int ac, char **av)
{
	int i;
	const char *p = NULL;
	for (i = 0; i < ac; i++) {
		if (strncmp(av[i], "shoal=", 6) == 0)
			p = av[i] + 6;
		else
			slurm_info("shoal: plugstack.conf: unknown argument %s ignored (the plugin takes shoal=/path/to/shoal)", av[i]);
	}
	if (p == NULL) {
		slurm_error("shoal: plugstack.conf: shoal=/path/to/shoal is required "
			    "(e.g. `optional /usr/lib/shoal/shoal_spank.so shoal=/usr/local/bin/shoal`)");
		return -1;
	}
	if (p[0] != '/') {
		slurm_error("shoal: plugstack.conf: shoal=%s is not an absolute path: root runs it in the "
			    "job epilog, so give the full path of the shoal binary", p);
		return -1;
	}
	if (strlen(p) >= sizeof shoal_path) {
		slurm_error("shoal: plugstack.conf: shoal= path longer than %zu bytes", sizeof shoal_path - 1);
		return -1;
	}
	strcpy(shoal_path, p);
	return 0;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	if (parse_args(ac, av) < 0)
		return -1;
	if (spank_context() == S_CTX_SLURMD || spank_context() == S_CTX_JOB_SCRIPT)
		return 0;
	if (spank_option_register(sp, &shoal_option) != ESPANK_SUCCESS) {
		slurm_error("shoal: cannot register the --shoal option");
		return -1;
	}
	return 0;
}

/* task_init runs in the task, as the user, just before Slurm execs the command: exec
 * `shoal launch -- ARGV` instead, with the task's environment. */
int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	int argc = 0, i;
	char **argv = NULL, **env = NULL, **nargv;
	(void)ac; (void)av;
	if (!use_shoal || !spank_remote(sp))
		return 0;
	if (shoal_path[0] != '/') {
		slurm_error("shoal: --shoal: no absolute shoal= path in plugstack.conf");
		return -1;
	}
	if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || argc < 1) {
		slurm_error("shoal: --shoal: cannot read the task's command");
		return -1;
	}
	if (spank_get_item(sp, S_JOB_ENV, &env) != ESPANK_SUCCESS)
		env = NULL;
	nargv = calloc(argc + 4, sizeof *nargv);
	if (nargv == NULL)
		return -1;
	nargv[0] = shoal_path;
	nargv[1] = "launch";
	nargv[2] = "--";
	for (i = 0; i < argc; i++)
		nargv[3 + i] = argv[i];
	nargv[3 + argc] = NULL;
	if (env != NULL)
		execve(shoal_path, nargv, env);
	else
		execv(shoal_path, nargv);
	slurm_error("shoal: --shoal: exec %s: %s (set shoal=/path/to/shoal in plugstack.conf)",
		    shoal_path, strerror(errno));
	return -1;
}

/* job_epilog runs as root on each node after the job: `shoal admin epilog --job ID --uid UID`.
 * Its output goes to Slurm's log line by line (slurm_info), and a failure (exec failure,
 * non-zero exit, signal) is logged with slurm_error.
 *
 * It still returns 0 in every case: Slurm drains a node whose epilog fails, and what shoal's
 * epilog could not do (a leftover file, a process already gone) is no reason to take a node out
 * of service; the admin reads why in slurmd's log. */
int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
	uint32_t job = 0, uid = 0;
	char jobs[32], uids[32], line[1024];
	int out[2], errp[2], status = 0, child_errno = 0, lines = 0;
	ssize_t n;
	pid_t pid;
	FILE *f;

	if (parse_args(ac, av) < 0)
		return 0; /* said why; see above for 0 */
	if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS) {
		slurm_error("shoal: epilog: cannot read the job id: shoal admin epilog not run");
		return 0;
	}
	if (spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS) {
		slurm_error("shoal: epilog: job %u: cannot read the job's uid: shoal admin epilog not run", job);
		return 0;
	}
	snprintf(jobs, sizeof jobs, "%u", job);
	snprintf(uids, sizeof uids, "%u", uid);
	if (pipe2(out, O_CLOEXEC) < 0) {
		slurm_error("shoal: epilog: job %u: pipe: %s", job, strerror(errno));
		return 0;
	}
	if (pipe2(errp, O_CLOEXEC) < 0) {
		slurm_error("shoal: epilog: job %u: pipe: %s", job, strerror(errno));
		close(out[0]); close(out[1]);
		return 0;
	}
	pid = fork();
	if (pid < 0) {
		slurm_error("shoal: epilog: job %u: fork: %s", job, strerror(errno));
		close(out[0]); close(out[1]); close(errp[0]); close(errp[1]);
		return 0;
	}
	if (pid == 0) {
		char *args[] = { shoal_path, "admin", "epilog", "--job", jobs, "--uid", uids, NULL };
		int e;
		dup2(out[1], STDOUT_FILENO);
		dup2(out[1], STDERR_FILENO);
		execv(shoal_path, args);
		e = errno; /* exec failed: tell the parent why through the close-on-exec pipe */
		if (write(errp[1], &e, sizeof e) < 0)
			_exit(126);
		_exit(127);
	}
	close(out[1]);
	close(errp[1]);
	f = fdopen(out[0], "r");
	if (f != NULL) {
		while (fgets(line, sizeof line, f) != NULL) {
			line[strcspn(line, "\n")] = 0;
			if (++lines <= 100)
				slurm_info("shoal: epilog: %s", line);
		}
		fclose(f);
	} else {
		close(out[0]);
	}
	while ((n = read(errp[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR)
		;
	close(errp[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			slurm_error("shoal: epilog: job %u: waitpid: %s", job, strerror(errno));
			return 0;
		}
	}
	if (n == (ssize_t)sizeof child_errno)
		slurm_error("shoal: epilog: job %u: exec %s: %s (check shoal= in plugstack.conf)",
			    job, shoal_path, strerror(child_errno));
	else if (WIFSIGNALED(status))
		slurm_error("shoal: epilog: job %u: %s admin epilog killed by signal %d", job, shoal_path, WTERMSIG(status));
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		slurm_error("shoal: epilog: job %u: %s admin epilog exited with status %d (its output is above)",
			    job, shoal_path, WEXITSTATUS(status));
	return 0; /* never drain a node for shoal's sake: see above */
}
