package main

import "testing"

func TestParseLabels(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{`{"zone": "east"}`, map[string]string{"zone": "east"}, true},
		{`{"example.com/disk": "ssd", "empty": ""}`, map[string]string{"example.com/disk": "ssd", "empty": ""}, true},
		{`{}`, map[string]string{}, true},
		{`{"ray.io/node-id": "x"}`, nil, false},
		{`{"zone": 3}`, nil, false},
		{`["zone"]`, nil, false},
		{`{"-bad": "x"}`, nil, false},
		{`{"zone": "has space"}`, nil, false},
		{`{"/x": "y"}`, nil, false},
		{`zone=east`, nil, false},
	} {
		got, err := parseLabels(tc.in)
		if (err == nil) != tc.ok {
			t.Fatalf("parseLabels(%s) error %v, want ok=%v", tc.in, err, tc.ok)
		}
		if tc.ok && len(got) != len(tc.want) {
			t.Fatalf("parseLabels(%s) = %v, want %v", tc.in, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Fatalf("parseLabels(%s) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

// FuzzParseLabels: no input makes parseLabels panic, and what it accepts has names and values
// within the limits.
func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{`{"zone": "east"}`, `{"a.b/c": ""}`, `{"ray.io/x": "y"}`, `[]`, `{`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseLabels(s)
		if err != nil {
			return
		}
		for k, v := range m {
			if k == "" || len(v) > 63 {
				t.Fatalf("accepted %q=%q", k, v)
			}
		}
	})
}
