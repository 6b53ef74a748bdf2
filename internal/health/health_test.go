package health_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/health"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		handler func(n int64, w http.ResponseWriter)
		expect  string
		wantErr string // "" for success
		stale   bool
	}{
		{name: "2xx passes", handler: func(n int64, w http.ResponseWriter) { w.Write([]byte("ok")) }},
		{name: "recovers after errors", handler: func(n int64, w http.ResponseWriter) {
			if n < 3 {
				w.WriteHeader(502)
				return
			}
			w.Write([]byte("ok"))
		}},
		{name: "5xx fails", handler: func(n int64, w http.ResponseWriter) { w.WriteHeader(500) }, wantErr: "HTTP 500"},
		{name: "body names the new release", expect: "release {release-id}", handler: func(n int64, w http.ResponseWriter) { w.Write([]byte("release 20260102030405")) }},
		{name: "header names the new release", expect: "X-Release: {release-id}", handler: func(n int64, w http.ResponseWriter) {
			w.Header().Set("X-Release", "20260102030405")
		}},
		{name: "old release still served", expect: "{release-id}", handler: func(n int64, w http.ResponseWriter) { w.Write([]byte("release 20260101000000")) },
			wantErr: "$realpath_root", stale: true},
		{name: "old release served without expectation", handler: func(n int64, w http.ResponseWriter) { w.Write([]byte("release 20260101000000")) },
			wantErr: "still serves the previous release", stale: true},
		{name: "switches over in time", expect: "{release-id}", handler: func(n int64, w http.ResponseWriter) {
			if n < 3 {
				w.Write([]byte("release 20260101000000"))
				return
			}
			w.Write([]byte("release 20260102030405"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.handler(n.Add(1), w) }))
			defer srv.Close()
			c := health.Check{URL: srv.URL, Timeout: 700 * time.Millisecond, Expect: tt.expect, Every: 50 * time.Millisecond}
			err := c.Run(context.Background(), "20260102030405", "20260101000000")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			var se *health.StaleError
			if errors.As(err, &se) != tt.stale {
				t.Errorf("stale = %v, want %v", !tt.stale, tt.stale)
			}
		})
	}
}

// TestCheckNeverShowsURLPassword: the URL in every message is redacted.
func TestCheckNeverShowsURLPassword(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pass, _ := r.BasicAuth(); pass != "s3cret/pass" {
			t.Errorf("the server got password %q", pass)
		}
		w.Write([]byte("release 20260101000000"))
	}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://monitor:s3cret%2Fpass@", 1)
	for _, expect := range []string{"", "{release-id}"} {
		c := health.Check{URL: u, Timeout: 300 * time.Millisecond, Expect: expect, Every: 50 * time.Millisecond}
		err := c.Run(context.Background(), "20260102030405", "20260101000000")
		if err == nil || !strings.Contains(err.Error(), "monitor:xxxxx@") {
			t.Fatalf("err = %v, want the redacted URL", err)
		}
		for _, s := range []string{"s3cret", "s3cret%2Fpass", "s3cret/pass"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error shows the password: %v", err)
			}
		}
	}
	// A server that cannot be reached: the client's own error names the URL too.
	c := health.Check{URL: "http://monitor:s3cret@127.0.0.1:1/up", Timeout: 200 * time.Millisecond, Every: 50 * time.Millisecond}
	if err := c.Run(context.Background(), "20260102030405", ""); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("err = %v", err)
	}
}

// TestCheckTimeoutDuringARequest: when the time runs out while a request
// is waiting, the error still says what the answers before it were (here
// the stale-release trap), not "context deadline exceeded".
func TestCheckTimeoutDuringARequest(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 1 {
			<-r.Context().Done() // answers only once
			return
		}
		w.Write([]byte("release 20260101000000"))
	}))
	defer srv.Close()
	c := health.Check{URL: srv.URL, Timeout: 300 * time.Millisecond, Expect: "{release-id}", Every: 10 * time.Millisecond}
	err := c.Run(context.Background(), "20260102030405", "20260101000000")
	var se *health.StaleError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a StaleError", err)
	}
}
