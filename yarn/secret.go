package yarn

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/shoal-hpc/shoal/yarn/ipc"
)

// SecretAlias is the alias under which the cluster's secret travels in a member container's
// token file.
const SecretAlias = "shoal.cluster.secret"

// credentialsWithSecret is a Hadoop token file (version 0, Writable) holding no token and one
// secret key: what the ApplicationMaster hands a NodeManager as a container's tokens, so that the
// secret lands in the container's private token file (HADOOP_TOKEN_FILE_LOCATION) and never on a
// command line, in the environment, or in the launch script.
func credentialsWithSecret(alias string, secret []byte) []byte {
	var b bytes.Buffer
	b.WriteString("HDTS")
	b.WriteByte(0) // version 0: Writable
	writeVLong(&b, 0)
	writeVLong(&b, 1)
	writeVLong(&b, int64(len(alias)))
	b.WriteString(alias)
	writeVLong(&b, int64(len(secret)))
	b.Write(secret)
	return b.Bytes()
}

// writeVLong writes Hadoop's WritableUtils VLong: -112..127 in one byte, else a length byte and
// the big-endian magnitude.
func writeVLong(b *bytes.Buffer, i int64) {
	if i >= -112 && i <= 127 {
		b.WriteByte(byte(i))
		return
	}
	n := int64(-112)
	if i < 0 {
		i ^= -1
		n = -120
	}
	for t := i; t != 0; t >>= 8 {
		n--
	}
	b.WriteByte(byte(n))
	k := -(n + 112)
	if n < -120 {
		k = -(n + 120)
	}
	for idx := k; idx != 0; idx-- {
		shift := (idx - 1) * 8
		b.WriteByte(byte((i >> shift) & 0xff))
	}
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
