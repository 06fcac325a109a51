package ipc

import (
	"fmt"
	"strconv"
	"strings"
)

// containerSeqBits is how many low bits of a container id hold the sequence
// number; the RM epoch sits above them.
const containerSeqBits = 40

// String is YARN's text form, application_<cluster ts>_<id, 4+ digits>.
func (a ApplicationID) String() string {
	return fmt.Sprintf("application_%d_%04d", a.ClusterTimestamp, a.ID)
}

// String is YARN's text form, appattempt_<cluster ts>_<app, 4+ digits>_<attempt, 6+ digits>.
func (a ApplicationAttemptID) String() string {
	return fmt.Sprintf("appattempt_%d_%04d_%06d", a.App.ClusterTimestamp, a.App.ID, a.Attempt)
}

// Epoch is the RM epoch encoded in the container id (0 before any RM restart).
func (c ContainerID) Epoch() int64 { return c.ID >> containerSeqBits }

// Seq is the container's sequence number within its attempt.
func (c ContainerID) Seq() int64 { return c.ID & (1<<containerSeqBits - 1) }

// String is YARN's text form: container_<ts>_<app>_<attempt>_<seq> or, after
// an RM restart, container_e<epoch>_<ts>_<app>_<attempt>_<seq>.
func (c ContainerID) String() string {
	var b strings.Builder
	b.WriteString("container_")
	if e := c.Epoch(); e > 0 {
		fmt.Fprintf(&b, "e%02d_", e)
	}
	fmt.Fprintf(&b, "%d_%04d_%02d_%06d", c.Attempt.App.ClusterTimestamp, c.Attempt.App.ID, c.Attempt.Attempt, c.Seq())
	return b.String()
}

// ParseContainerID parses YARN's text form of a container id, e.g. the
// CONTAINER_ID environment variable of a container: container_<ts>_<app>_<attempt>_<seq>
// or container_e<epoch>_<ts>_<app>_<attempt>_<seq>.
func ParseContainerID(s string) (ContainerID, error) {
	bad := func(why string) (ContainerID, error) {
		return ContainerID{}, fmt.Errorf("parse container id %q: %s (want container_[e<epoch>_]<cluster ts>_<app>_<attempt>_<seq>, as in CONTAINER_ID)", s, why)
	}
	parts := strings.Split(s, "_")
	if len(parts) < 1 || parts[0] != "container" {
		return bad("no container_ prefix")
	}
	parts = parts[1:]
	var epoch int64
	if len(parts) > 0 && strings.HasPrefix(parts[0], "e") {
		e, err := strconv.ParseInt(parts[0][1:], 10, 32)
		if err != nil || e < 0 || e >= 1<<(63-containerSeqBits) {
			return bad("bad epoch " + strconv.Quote(parts[0]))
		}
		epoch = e
		parts = parts[1:]
	}
	if len(parts) != 4 {
		return bad("wrong number of parts")
	}
	ts, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || ts < 0 {
		return bad("bad cluster timestamp")
	}
	app, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil || app < 0 {
		return bad("bad application number")
	}
	att, err := strconv.ParseInt(parts[2], 10, 32)
	if err != nil || att < 0 {
		return bad("bad attempt number")
	}
	seq, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil || seq < 0 || seq >= 1<<containerSeqBits {
		return bad("bad container number")
	}
	return ContainerID{
		Attempt: ApplicationAttemptID{App: ApplicationID{ClusterTimestamp: ts, ID: int32(app)}, Attempt: int32(att)},
		ID:      epoch<<containerSeqBits | seq,
	}, nil
}

// Encoders and decoders of the id and resource records (yarn_protos.proto).

// ApplicationIdProto: id = 1, cluster_timestamp = 2.
func (a ApplicationID) proto() msg {
	var m msg
	m.int(1, int64(a.ID))
	m.int(2, a.ClusterTimestamp)
	return m
}

func decodeAppID(b []byte) (a ApplicationID, err error) {
	err = fields(b, func(f field) (err error) {
		switch f.num {
		case 1:
			a.ID, err = f.int32()
		case 2:
			a.ClusterTimestamp, err = f.int64()
		}
		return err
	})
	return a, err
}

// ApplicationAttemptIdProto: application_id = 1, attemptId = 2.
func (a ApplicationAttemptID) proto() msg {
	var m msg
	m.sub(1, a.App.proto())
	m.int(2, int64(a.Attempt))
	return m
}

func decodeAttemptID(b []byte) (a ApplicationAttemptID, err error) {
	err = fields(b, func(f field) error {
		switch f.num {
		case 1:
			v, err := f.bytes()
			if err != nil {
				return err
			}
			a.App, err = decodeAppID(v)
			return err
		case 2:
			v, err := f.int32()
			a.Attempt = v
			return err
		}
		return nil
	})
	return a, err
}

// ContainerIdProto: app_id = 1 (kept for old servers), app_attempt_id = 2, id = 3.
func (c ContainerID) proto() msg {
	var m msg
	m.sub(1, c.Attempt.App.proto())
	m.sub(2, c.Attempt.proto())
	m.int(3, c.ID)
	return m
}

func decodeContainerID(b []byte) (c ContainerID, err error) {
	var app *ApplicationID
	err = fields(b, func(f field) error {
		switch f.num {
		case 1:
			v, err := f.bytes()
			if err != nil {
				return err
			}
			a, err := decodeAppID(v)
			app = &a
			return err
		case 2:
			v, err := f.bytes()
			if err != nil {
				return err
			}
			c.Attempt, err = decodeAttemptID(v)
			return err
		case 3:
			v, err := f.int64()
			c.ID = v
			return err
		}
		return nil
	})
	if app != nil && c.Attempt.App == (ApplicationID{}) {
		c.Attempt.App = *app
	}
	return c, err
}

// ResourceProto: memory = 1 (MiB), virtual_cores = 2.
func (r Resource) proto() msg {
	var m msg
	m.int(1, r.MemoryMB)
	m.int(2, int64(r.VCores))
	return m
}

func decodeResource(b []byte) (r Resource, err error) {
	err = fields(b, func(f field) (err error) {
		switch f.num {
		case 1:
			r.MemoryMB, err = f.int64()
		case 2:
			r.VCores, err = f.int32()
		}
		return err
	})
	return r, err
}

// TokenProto (Security.proto): identifier = 1, password = 2, kind = 3, service = 4.
func (t Token) proto() msg {
	var m msg
	m.bytes(1, t.Identifier)
	m.bytes(2, t.Password)
	m.str(3, t.Kind)
	m.str(4, t.Service)
	return m
}

func decodeToken(b []byte) (t Token, err error) {
	err = fields(b, func(f field) (err error) {
		switch f.num {
		case 1:
			var v []byte
			v, err = f.bytes()
			t.Identifier = append([]byte(nil), v...)
		case 2:
			var v []byte
			v, err = f.bytes()
			t.Password = append([]byte(nil), v...)
		case 3:
			t.Kind, err = f.str()
		case 4:
			t.Service, err = f.str()
		}
		return err
	})
	return t, err
}

// NodeIdProto: host = 1, port = 2.
func decodeNodeID(b []byte) (host string, port int, err error) {
	err = fields(b, func(f field) error {
		switch f.num {
		case 1:
			v, err := f.str()
			host = v
			return err
		case 2:
			v, err := f.int32()
			port = int(v)
			return err
		}
		return nil
	})
	return host, port, err
}
