// Package testenv starts the real servers that tests talk to: a private
// redis-server on a free port (standalone or a cluster), an embedded NATS
// server, a private PostgreSQL server (initdb and postgres, as the OS user
// postgres when the tests run as root), a private RabbitMQ node, and fakes
// where no server can be run here. It also finds the machine's shared
// servers (RedisURL, NATSURL, PostgresURL, RabbitMQURL), which tests must
// never restart.
//
// When a server cannot be had, tests skip with a loud reason. When the
// environment variable BACKPLANE_REQUIRE_SERVICES=1 is set (CI sets it), the
// same condition fails the test instead, so a missing server never hides
// behind a skip.
package testenv
