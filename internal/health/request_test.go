package health_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/atomic-deploy/atomic-deploy/internal/health"
)

// TestRequestNeverShowsPasswordOrQuery: whatever goes wrong, the error
// shows the URL without its password and query (a token).
func TestRequestNeverShowsPasswordOrQuery(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer srv.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	withSecrets := func(base, path string) string {
		return strings.Replace(base, "http://", "http://ops:PASS-w0rd@", 1) + path + "?token=TOKEN-1234"
	}
	if err := health.Request(context.Background(), nil, withSecrets(srv.URL, "/ok"), time.Second); err != nil {
		t.Errorf("2xx: %v", err)
	}
	for _, tt := range []struct{ url, want string }{
		{withSecrets(srv.URL, "/fail"), "/fail?… answered HTTP 403"},
		{withSecrets("http://"+closed, "/reset"), "connection refused"},
	} {
		err := health.Request(context.Background(), nil, tt.url, time.Second)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "ops:xxxxx@") {
			t.Errorf("%s: %v, want %q with the URL redacted", tt.url, err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), "PASS-w0rd") || strings.Contains(err.Error(), "TOKEN-1234")) {
			t.Errorf("the error shows a secret: %v", err)
		}
	}
}
