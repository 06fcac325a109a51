package ipc

import "fmt"

// ContainerProto: id = 1, nodeId = 2, node_http_address = 3, resource = 4,
// priority = 5, container_token = 6.
func decodeContainer(b []byte) (c Container, err error) {
	err = fields(b, func(f field) error {
		if f.num > 6 {
			return nil
		}
		v, err := f.bytes()
		if err != nil {
			return err
		}
		switch f.num {
		case 1:
			c.ID, err = decodeContainerID(v)
		case 2:
			c.NodeHost, c.NodePort, err = decodeNodeID(v)
		case 3:
			c.NodeHTTPAddress = string(v)
		case 4:
			c.Resource, err = decodeResource(v)
		case 5:
			err = fields(v, func(g field) (err error) {
				if g.num == 1 {
					c.Priority, err = g.int32()
				}
				return err
			})
		case 6:
			c.Token, err = decodeToken(v)
		}
		return err
	})
	if err != nil {
		return c, fmt.Errorf("container: %w", err)
	}
	return c, nil
}

// ContainerStateProto names, without the C_ prefix.
var containerStates = map[int32]string{1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "SCHEDULED"}

// ContainerStatusProto: container_id = 1, state = 2, diagnostics = 3,
// exit_status = 4 (default -1000, ContainerExitStatus.INVALID).
func decodeContainerStatus(b []byte) (s ContainerStatus, err error) {
	s.ExitStatus = -1000
	err = fields(b, func(f field) error {
		var err error
		switch f.num {
		case 1:
			var v []byte
			if v, err = f.bytes(); err == nil {
				s.ID, err = decodeContainerID(v)
			}
		case 2:
			var v int32
			v, err = f.int32()
			s.State = containerStates[v]
			if s.State == "" {
				s.State = fmt.Sprintf("STATE_%d", v)
			}
		case 3:
			s.Diagnostics, err = f.str()
		case 4:
			s.ExitStatus, err = f.int32()
		}
		return err
	})
	if err != nil {
		return s, fmt.Errorf("container status: %w", err)
	}
	return s, nil
}

// SerializedExceptionProto: message = 1, trace = 2, class_name = 3.
func decodeSerializedException(b []byte) (*RemoteError, error) {
	re := &RemoteError{}
	err := fields(b, func(f field) (err error) {
		switch f.num {
		case 1:
			re.Msg, err = f.str()
		case 3:
			re.Class, err = f.str()
		}
		return err
	})
	return re, err
}

// ContainerExceptionMapProto: container_id = 1, exception = 2.
func decodeContainerException(b []byte) (ContainerID, *RemoteError, error) {
	var id ContainerID
	re := &RemoteError{}
	err := fields(b, func(f field) error {
		v, err := f.bytes()
		if err != nil {
			return err
		}
		switch f.num {
		case 1:
			id, err = decodeContainerID(v)
		case 2:
			re, err = decodeSerializedException(v)
		}
		return err
	})
	return id, re, err
}

// URLProto: scheme = 1, host = 2, port = 3, file = 4, userInfo = 5.
func (u URL) proto() msg {
	var m msg
	if u.Scheme != "" {
		m.str(1, u.Scheme)
	}
	if u.Host != "" {
		m.str(2, u.Host)
	}
	if u.Port > 0 {
		m.int(3, int64(u.Port))
	}
	m.str(4, u.File)
	if u.UserInfo != "" {
		m.str(5, u.UserInfo)
	}
	return m
}

// LocalResourceProto: resource = 1, size = 2, timestamp = 3, type = 4, visibility = 5.
func (r LocalResource) proto() msg {
	var m msg
	m.sub(1, r.URL.proto())
	m.int(2, r.Size)
	m.int(3, r.Timestamp)
	t, v := r.Type, r.Visibility
	if t == 0 {
		t = File
	}
	if v == 0 {
		v = Application
	}
	m.int(4, int64(t))
	m.int(5, int64(v))
	return m
}

// ContainerLaunchContextProto: localResources = 1 (StringLocalResourceMapProto:
// key 1, value 2), tokens = 2, environment = 4 (StringStringMapProto: key 1,
// value 2), command = 5.
func (lc LaunchContext) proto() msg {
	var m msg
	for _, k := range sortedKeys(lc.LocalResources) {
		var kv msg
		kv.str(1, k)
		kv.sub(2, lc.LocalResources[k].proto())
		m.sub(1, kv)
	}
	if len(lc.Tokens) > 0 {
		m.bytes(2, lc.Tokens)
	}
	for _, k := range sortedKeys(lc.Env) {
		var kv msg
		kv.str(1, k)
		kv.str(2, lc.Env[k])
		m.sub(4, kv)
	}
	for _, c := range lc.Command {
		m.str(5, c)
	}
	return m
}
