package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// labelKey and labelValue follow Ray's label syntax (that of Kubernetes labels): an optional
// DNS-subdomain prefix and a name of at most 63 characters; a value of at most 63 characters.
var (
	labelName  = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$`)
	labelValue = regexp.MustCompile(`^(([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)$`)
)

// parseLabels reads --labels: a JSON object of label names to values.
func parseLabels(s string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("%q is not a JSON object of strings (%v); write e.g. '{\"zone\": \"east\"}'", s, err)
	}
	for k, v := range m {
		name := k
		if i := strings.LastIndexByte(k, '/'); i >= 0 {
			prefix := k[:i]
			name = k[i+1:]
			if prefix == "" || len(prefix) > 253 {
				return nil, fmt.Errorf("label %q: the prefix before / must be 1 to 253 characters", k)
			}
			if prefix == "ray.io" || strings.HasSuffix(prefix, ".ray.io") {
				return nil, fmt.Errorf("label %q: the ray.io prefix is reserved for labels the cluster sets itself (ray.io/node-id)", k)
			}
		}
		if !labelName.MatchString(name) {
			return nil, fmt.Errorf("label %q: a name is 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k)
		}
		if !labelValue.MatchString(v) {
			return nil, fmt.Errorf("label %q: value %q must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k, v)
		}
	}
	return m, nil
}
