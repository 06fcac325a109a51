package yarn

import (
	"errors"
	"fmt"
	"maps"
	"os"

	"github.com/shoal-hpc/shoal/yarn/ipc"
)

// SecretAlias is the alias under which the cluster's secret travels, as a secret key of the
// member containers' Credentials.
const SecretAlias = "shoal.cluster.secret"

// memberCredentials is what the ApplicationMaster hands a NodeManager as a member container's
// tokens (ContainerLaunchContext.tokens, a serialized Credentials), the way Hadoop's own
// ApplicationMasters forward credentials: every token and secret key of the AM's own token file
// except the AMRMToken (which lets its holder act as the AM towards the ResourceManager), plus
// the cluster's secret under SecretAlias. The NodeManager writes it to the container's
// container_tokens file and points HADOOP_TOKEN_FILE_LOCATION at it, so the secret is never on
// a command line, in the environment, in the launch script or in the application's submission.
// Version 0 (Writable): every Hadoop release reads it.
func memberCredentials(am *ipc.Credentials, secret []byte) ([]byte, error) {
	if len(secret) == 0 {
		return nil, errors.New("the cluster has no secret to give its members")
	}
	c := &ipc.Credentials{Tokens: map[string]ipc.Token{}, Secrets: map[string][]byte{}}
	if am != nil {
		for alias, t := range am.Tokens {
			if t.Kind != ipc.KindAMRMToken {
				c.Tokens[alias] = t
			}
		}
		maps.Copy(c.Secrets, am.Secrets)
	}
	c.Secrets[SecretAlias] = secret
	return c.Marshal(ipc.TokenFileWritable)
}

// secretFromTokenFile reads the cluster's secret from this container's token file.
func secretFromTokenFile() (string, error) {
	p := os.Getenv("HADOOP_TOKEN_FILE_LOCATION")
	if p == "" {
		return "", errors.New("HADOOP_TOKEN_FILE_LOCATION is not set: `shoal yarn agent` runs only in a container the shoal ApplicationMaster started")
	}
	creds, err := ipc.ReadTokenFile(p)
	if err != nil {
		return "", fmt.Errorf("read the cluster secret: %w", err)
	}
	s, ok := creds.Secrets[SecretAlias]
	if !ok || len(s) == 0 {
		return "", fmt.Errorf("the token file %s holds no %s: this container was not started by the shoal ApplicationMaster", p, SecretAlias)
	}
	return string(s), nil
}
