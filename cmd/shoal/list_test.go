package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"state=ALIVE", []string{"state", "=", "ALIVE"}, false},
		{"class_name!=Trainer", []string{"class_name", "!=", "Trainer"}, false},
		{" state = ALIVE ", []string{"state", "=", "ALIVE"}, false},
		{"name=", []string{"name", "=", ""}, false},
		{"name=a=b", []string{"name", "=", "a=b"}, false},
		{"state", nil, true},
		{"=ALIVE", nil, true},
		{"!=x", nil, true},
	} {
		got, err := parseFilter(c.in)
		if c.err {
			if !errors.Is(err, errFilter) || !strings.Contains(err.Error(), "state=ALIVE") {
				t.Errorf("parseFilter(%q) = %v, %v; want an error with an example", c.in, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseFilter(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"state=ALIVE", "a!=b", "=", "!=", "x = y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseFilter(s)
		if err != nil {
			if !errors.Is(err, errFilter) {
				t.Fatalf("error %v does not wrap errFilter", err)
			}
			return
		}
		if len(got) != 3 || got[0] == "" || (got[1] != "=" && got[1] != "!=") {
			t.Fatalf("parseFilter(%q) = %q", s, got)
		}
	})
}
