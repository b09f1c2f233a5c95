package testenv

import (
	"strconv"
	"testing"
)

func TestStartPostgres(t *testing.T) {
	srv := StartPostgres(t)
	out, err := srv.Exec("SELECT current_user || '@' || current_setting('port')")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres@" + srvPort(srv); out[0] != want {
		t.Errorf("got %q, want %q", out[0], want)
	}
	if _, err := srv.Exec("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	out, err = srv.Exec("SELECT count(*) FROM kept")
	if err != nil || out[0] != "1" {
		t.Fatalf("after Restart: %v %v; want the table kept", out, err)
	}
	srv.Kill()
	if err := PostgresPing(srv.URL()); err == nil {
		t.Fatal("the server answers after Kill")
	}
	srv.Restart()
	if err := PostgresPing(srv.URL()); err != nil {
		t.Fatalf("after Kill and Restart: %v", err)
	}
}

func srvPort(s *PostgresServer) string { return strconv.Itoa(s.Port()) }

func TestPostgresShared(t *testing.T) {
	if err := PostgresPing(PostgresURL(t)); err != nil {
		t.Fatal(err)
	}
}
