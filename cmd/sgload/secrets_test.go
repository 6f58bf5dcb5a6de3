package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// marker is a secret the test plants; it must never be printed. Each has a
// name of its own, so a failure says which leaked and from where.
func marker(name string) string { return "MARK" + name + "x9Qz7Wv3Lk2Jh8Gf" }

// brokenServer answers its first request by closing the connection (a
// network error, whose Go error quotes the URL) and then with status.
func brokenServer(t *testing.T, status int) *httptest.Server {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			if hj, ok := w.(http.Hijacker); ok {
				c, _, _ := hj.Hijack()
				c.Close()
				return
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errors":[{"message":"nope"}]}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// closedPort is an address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// withCreds puts user info, a query token and a path token into u.
func withCreds(u, prefix string) string {
	p, _ := url.Parse(u)
	p.User = url.UserPassword(marker(prefix+"User"), marker(prefix+"Pass"))
	p.Path += "/" + marker(prefix+"PathToken")
	p.RawQuery = "token=" + marker(prefix+"Query")
	return p.String()
}

// TestSecretsNeverPrinted runs every command at debug level with marker
// secrets in every place one can go (flags, environment variables, user
// info, queries and tokens in URLs, request headers), drives each through
// its failures (a store that cannot be reached, an API and a consumer that
// break the connection and then refuse, wrong credentials sent to serve),
// and looks for the markers in everything printed: stdout, stderr, logs,
// --help.
func TestSecretsNeverPrinted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every command")
	}
	var mu sync.Mutex
	var printed []string // "command: output"
	keep := func(what, out string) {
		mu.Lock()
		defer mu.Unlock()
		printed = append(printed, what+":\n"+out)
	}
	run := func(what string, env []string, args ...string) {
		t.Helper()
		stdout, stderr, _ := runSgload(t, env, append([]string{"--log-level", "debug", "--log-format", "json"}, args...)...)
		keep(what, stdout+stderr)
	}

	// Secrets given to the commands themselves.
	urlToken := marker("UrlToken")
	oauthSecret := marker("OauthSecret")
	env := []string{
		"SGLOAD_OAUTH_CLIENT_ID=sendgrid", "SGLOAD_OAUTH_CLIENT_SECRET=" + oauthSecret,
		"SGLOAD_URL_TOKENS=" + urlToken,
		"SENDGRID_API_KEY=" + marker("ApiKey"),
		"SGLOAD_SEGMENT_WRITE_KEY=" + marker("WriteKey"),
		"AWS_ACCESS_KEY_ID=" + marker("AwsKeyId"), "AWS_SECRET_ACCESS_KEY=" + marker("AwsSecret"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=us-east-1",
	}
	s3Bucket := "s3://nowhere?endpoint=" + url.QueryEscape("http://"+marker("S3User")+":"+marker("S3Pass")+"@"+closedPort(t)) +
		"&region=us-east-1&use_path_style=true"
	s3BadParam := s3Bucket + "&access_token=" + marker("S3Query")

	// --help of every command, with every secret in the environment.
	for _, cmd := range [][]string{{"--help"}, {"serve", "--help"}, {"run", "--help"}, {"flush", "--help"}, {"verify", "--help"},
		{"views", "--help"}, {"sync", "--help"}, {"forward", "--help"}, {"token", "new", "--help"}} {
		run(strings.Join(cmd, " "), env, cmd...)
	}
	run("token new", env, "token", "new") // prints a new token: its job

	// Buckets: one that does not open, one that does not answer.
	root := t.TempDir()
	sampleSpool(t, root)
	for _, b := range []string{s3BadParam, s3Bucket} {
		run("flush "+b[:12], env, "flush", "--spool", root, "--bucket", b, "--bucket-timeout", "2s")
		run("verify", env, "verify", "--spool", root, "--bucket", b, "--bucket-timeout", "2s")
		run("views", env, "views", "--dialect", "duckdb", "--bucket", b, "--bucket-timeout", "2s")
		run("views --no-discover", env, "views", "--dialect", "duckdb", "--bucket", b, "--no-discover")
	}
	run("views bad URL", env, "views", "--dialect", "bigquery", "--no-discover", "--bucket", "ftp://"+marker("FtpUser")+":"+marker("FtpPass")+"@h/x")

	// The SendGrid API: the connection breaks, then the key is refused.
	api := brokenServer(t, http.StatusUnauthorized)
	run("sync", env, "sync", "--spool", root, "--collections", "bounces", "--api-url", withCreds(api.URL, "Api"))

	// Segment: the connection breaks, then the write key is refused.
	seg := brokenServer(t, http.StatusUnauthorized)
	run("forward", env, "forward", "--spool", root, "--anonymous", "--endpoint", withCreds(seg.URL, "Forward"))

	// The same secrets given as flags, through configuration errors and
	// refusals.
	run("serve flags", nil, "serve", "--spool", t.TempDir(), "--oauth-client-id", "sendgrid",
		"--oauth-client-secret", marker("FlagOauth"), "--url-token", marker("FlagUrlToken"), "--allow-cidr", "not-a-network")
	run("serve short secret", nil, "serve", "--spool", t.TempDir(), "--oauth-client-id", "sendgrid", "--oauth-client-secret", "MARKshort")
	run("serve short token", nil, "serve", "--spool", t.TempDir(), "--url-token", "MARKshort")
	run("sync flag", nil, "sync", "--spool", root, "--collections", "bounces", "--api-key", marker("FlagApiKey"),
		"--api-url", brokenServer(t, http.StatusForbidden).URL)
	run("forward flag", nil, "forward", "--spool", root, "--anonymous", "--write-key", marker("FlagWriteKey"),
		"--endpoint", brokenServer(t, http.StatusUnauthorized).URL)

	// serve, with a tee whose consumer breaks the connection and then
	// refuses, and requests carrying wrong credentials everywhere.
	consumer := brokenServer(t, http.StatusForbidden)
	p := startSgload(t, env, "--log-level", "debug", "serve", "--spool", t.TempDir(), "--addr", "127.0.0.1:0",
		"--min-free-bytes", "0", "--tee", withCreds(consumer.URL, "Tee"))
	base := "http://" + p.waitLog(t, "serving")["addr"].(string)
	post := func(path string, hdr http.Header, body string) int {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	body := "[{\"event\":\"open\",\"sg_event_id\":\"s1\"}\r\n]\r\n"
	post("/webhook/sendgrid/"+marker("WrongUrlToken"), nil, body)
	post("/webhook/sendgrid/"+urlToken, http.Header{"Authorization": {"Bearer " + marker("WrongBearer")},
		"X-Twilio-Email-Event-Webhook-Signature": {marker("Signature")}, "User-Agent": {"agent-ua-not-a-secret"}}, body)
	post("/oauth/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		"grant_type=client_credentials&client_id=sendgrid&client_secret="+marker("GuessedSecret"))
	basic := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	req, _ := http.NewRequest("POST", "/", nil)
	req.SetBasicAuth("sendgrid", marker("BasicGuess"))
	basic.Set("Authorization", req.Header.Get("Authorization"))
	post("/oauth/token", basic, "grant_type=client_credentials")
	// A real token, then an accepted POST, which the tee then fails to deliver.
	resp, err := http.PostForm(base+"/oauth/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {"sendgrid"}, "client_secret": {oauthSecret}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	decodeJSON(t, resp, &tok)
	if st := post("/webhook/sendgrid/"+urlToken, http.Header{"Authorization": {"Bearer " + tok.AccessToken}}, body); st != 200 {
		t.Fatalf("authenticated POST: %d", st)
	}
	p.waitLog(t, "raw tee delivery failed")
	p.cmd.Process.Kill()
	p.wait()
	keep("serve", p.rawLogs())
	issued := tok.AccessToken

	// run: serve plus a flush into a store that does not answer.
	r := startSgload(t, env, "--log-level", "debug", "run", "--spool", t.TempDir(), "--addr", "127.0.0.1:0",
		"--min-free-bytes", "0", "--bucket", s3Bucket, "--bucket-timeout", "2s", "--flush-interval", "1s", "--segment-age", "1s")
	r.waitLog(t, "flush failed")
	r.cmd.Process.Kill()
	r.wait()
	keep("run", r.rawLogs())

	secrets := []string{issued}
	for _, e := range env {
		if _, v, _ := strings.Cut(e, "="); strings.Contains(v, "MARK") {
			secrets = append(secrets, v)
		}
	}
	all := strings.Join(printed, "\n")
	for _, out := range printed {
		for _, field := range strings.Fields(out) {
			if i := strings.Index(field, "MARK"); i >= 0 {
				t.Errorf("a marker secret was printed: %q in\n%s", field, firstLines(out, 30))
				break
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("secret %.12s... printed", s)
		}
	}
	// The test saw the failures it meant to cause.
	for _, want := range []string{"no progress", "the API key was refused", "refused the write key", "raw tee delivery failed",
		"authentication failed", "OAuth token request refused", "flush failed"} {
		if !strings.Contains(all, want) {
			t.Errorf("no output says %q: the failure was not exercised", want)
		}
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
