package events

import "testing"

func TestSummary(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"scalars sorted", `{"host":"goliath","goal":"switch","n":3,"ok":true}`, "goal=switch host=goliath n=3 ok=true"},
		{"quoted and nested", `{"msg":"a b","o":{"x":1},"l":[1,2]}`, `l=[2] msg="a b" o={…}`},
		{"big number kept", `{"bytes":12345678901234567890}`, "bytes=12345678901234567890"},
		{"not an object", `[1]`, `[1]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summary([]byte(tc.data)); got != tc.want {
				t.Errorf("Summary(%s) = %q, want %q", tc.data, got, tc.want)
			}
		})
	}
}
