package faultproxy_test

import (
	"fmt"
	"io"
	"net"

	"github.com/backplane-go/backplane/internal/faultproxy"
)

func Example() {
	// An upstream that greets every connection.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello\n"))
			_ = c.Close()
		}
	}()

	p, err := faultproxy.New(ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	c, _ := net.Dial("tcp", p.Addr())
	b, _ := io.ReadAll(c)
	_ = c.Close()
	fmt.Printf("through the proxy: %q\n", b)

	// A refused connection fails when it is made or when it is first used.
	p.SetRefuse(true)
	c, err = net.Dial("tcp", p.Addr())
	if err == nil {
		_, err = io.ReadAll(c)
		_ = c.Close()
	}
	fmt.Println("refused:", err != nil)
	// Output:
	// through the proxy: "hello\n"
	// refused: true
}
