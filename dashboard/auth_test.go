package dashboard

import (
	"fmt"
	"testing"
)

// TestSafeNext: a post-login redirect stays on this site. Browsers drop
// tabs and newlines from a Location and read a backslash as a slash, so
// "/\t/evil.com" is "//evil.com" to them: a redirect to another site.
func TestSafeNext(t *testing.T) {
	attacks := []string{
		"",
		"evil.com",
		"//evil.com",
		"///evil.com",
		"/\\evil.com",
		"\\\\evil.com",
		"\\/evil.com",
		"/\t/evil.com",
		"/\n/evil.com",
		"/\r/evil.com",
		"/\r\n/evil.com",
		"/ /evil.com",
		" //evil.com",
		"/\x00/evil.com",
		"/\x0b/evil.com",
		"/\x0c/evil.com",
		"/\x7f/evil.com",
		"/\u00a0/evil.com",
		"/\u2028/evil.com",
		"/\u200b/evil.com",
		"/\ufeff/evil.com",
		"/\u3000/evil.com",
		"/\xff/evil.com",
		"/hosts\t",
		"/alerts?x=\n",
		"/%2F%2Fevil.com",
		"/%2f/evil.com",
		"/%2F/evil.com",
		"/%5Cevil.com",
		"/%5cevil.com",
		"/%09/evil.com",
		"/%0A/evil.com",
		"/%0d%0a/evil.com",
		"/%20/evil.com",
		"/%00",
		"/%252F%252Fevil.com",
		"/%25252F%25252Fevil.com",
		"/%zz",
		"/alerts?x=%0d%0aLocation:%20//evil.com",
		"http://evil.com",
		"https://evil.com/",
		"https:evil.com",
		"javascript:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"/\\/evil.com",
		"/.\\evil.com",
		"/a\\b",
		"///\\evil.com",
		"/\\\\evil.com",
		"http:/\\evil.com",
		"//evil.com/%2F..",
		"/%5C%5Cevil.com",
		"//user@evil.com",
	}
	valid := []string{
		"/",
		"/alerts",
		"/hosts/goliath",
		"/hosts/goliath?range=24h",
		"/deploys?host=koishi&limit=50",
		"/alerts?q=disk%20full",
		"/alerts?q=a+b",
		"/hosts/goliath#drives",
		"/api/overview",
		"/hosts/web-1.example.org",
	}
	type tc struct{ name, in, want string }
	var cases []tc
	for _, n := range attacks {
		cases = append(cases, tc{fmt.Sprintf("attack %q", n), n, "/"})
	}
	for _, n := range valid {
		cases = append(cases, tc{fmt.Sprintf("valid %q", n), n, n})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := safeNext(c.in); got != c.want {
				t.Errorf("safeNext(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}
