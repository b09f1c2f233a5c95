package bigcachestore_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
)

func Example() {
	store, err := bigcachestore.New(bigcachestore.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	if err := store.Set("user:42", []byte(`{"name":"Ada"}`), 0); err != nil {
		log.Fatal(err)
	}
	v, ok := store.Get("user:42")
	fmt.Println(string(v), ok)

	_ = store.Delete("user:42")
	_, ok = store.Get("user:42")
	fmt.Println(ok)

	caps := store.Caps()
	err = store.Set("huge", make([]byte, caps.MaxValueLen+1), 0)
	fmt.Println(errors.Is(err, core.ErrValueTooLarge))
	// Output:
	// {"name":"Ada"} true
	// false
	// true
}
