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
 * The Go runtime does not survive the fork()s slurmstepd makes after loading plugins, so this
 * plugin is plain C and only ever execs the shoal binary: in the task (task_init, just before
 * Slurm's own execve, with the task's environment) and in the epilog (fork + exec + wait).
 */
#include <errno.h>
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
static char shoal_path[4096] = "shoal";

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

static void parse_args(int ac, char **av)
{
	int i;
	for (i = 0; i < ac; i++) {
		if (strncmp(av[i], "shoal=", 6) == 0 && strlen(av[i] + 6) < sizeof shoal_path)
			strcpy(shoal_path, av[i] + 6);
	}
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	parse_args(ac, av);
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

/* job_epilog runs as root on each node after the job: `shoal admin epilog --job ID`. */
int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
	uint32_t job = 0;
	char jobs[32];
	pid_t pid;
	int status = 0;
	parse_args(ac, av);
	if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS)
		return 0;
	snprintf(jobs, sizeof jobs, "%u", job);
	pid = fork();
	if (pid < 0)
		return 0;
	if (pid == 0) {
		char *args[] = { shoal_path, "admin", "epilog", "--job", jobs, NULL };
		execv(shoal_path, args);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return 0; /* never drain a node for shoal's sake: the epilog reports what it could not remove */
}
