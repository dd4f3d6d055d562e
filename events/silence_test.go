package events

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSilenceMatchers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    map[string]string
		wantErr string
	}{
		{name: "two", args: []string{"host=edge-*", "rule=fs.usage"}, want: map[string]string{"host": "edge-*", "rule": "fs.usage"}},
		{name: "no =", args: []string{"goliath"}, wantErr: `matcher "goliath": want LABEL=PATTERN, e.g. host=goliath`},
		{name: "bad label", args: []string{"Host=x"}, wantErr: `matcher "Host=x": label "Host": use lower-case letters, digits and _ (host, rule, object, severity, kind)`},
		{name: "empty pattern", args: []string{"host="}, wantErr: `matcher "host=": empty pattern`},
		{name: "bad pattern", args: []string{"host=[x"}, wantErr: `matcher "host=[x": bad pattern: syntax error in pattern`},
		{name: "twice", args: []string{"host=a", "host=b"}, wantErr: `matcher "host=b": key "host" given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSilenceMatchers(tc.args)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if s := FormatSilenceMatchers(got); s != "host=edge-* rule=fs.usage" {
				t.Errorf("FormatSilenceMatchers = %q", s)
			}
		})
	}
}
