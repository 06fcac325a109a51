"""Ray's `ray.job_config.JobConfig`: what a job sets at init(job_config=...). shoal applies its
namespace (ray_namespace) and runtime_env, as init(namespace=, runtime_env=) do, and keeps
metadata; the Java options are refused (shoal runs Python and Go workers)."""


class JobConfig:
    def __init__(self, jvm_options=None, code_search_path=None, runtime_env=None, _client_job=False,
                 metadata=None, ray_namespace=None, default_actor_lifetime="non_detached", _py_driver_sys_path=None):
        if jvm_options or code_search_path:
            raise ValueError("JobConfig(jvm_options=, code_search_path=) are for Java workers, which shoal does not run; "
                             "leave them out")
        if default_actor_lifetime not in ("non_detached", None):
            raise ValueError(f"JobConfig(default_actor_lifetime={default_actor_lifetime!r}) is not supported by shoal: "
                             "pass lifetime=\"detached\" to the actors that should outlive the job")
        self.runtime_env = runtime_env
        self.metadata = dict(metadata or {})
        self.ray_namespace = ray_namespace
        self.default_actor_lifetime = "non_detached"

    def set_metadata(self, key, value):
        self.metadata[key] = value

    def set_ray_namespace(self, ray_namespace):
        self.ray_namespace = ray_namespace

    def set_runtime_env(self, runtime_env, validate=False):
        self.runtime_env = runtime_env

    def set_default_actor_lifetime(self, default_actor_lifetime):
        if default_actor_lifetime != "non_detached":
            raise ValueError("default_actor_lifetime other than \"non_detached\" is not supported by shoal: "
                             "pass lifetime=\"detached\" to the actors that should outlive the job")

    @classmethod
    def from_json(cls, job_config_json):
        return cls(**{k: job_config_json[k] for k in ("runtime_env", "metadata", "ray_namespace") if k in job_config_json})


__all__ = ["JobConfig"]
