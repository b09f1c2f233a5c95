package otterstore_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/otterstore"
)

func Example() {
	store, err := otterstore.New(otterstore.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	if err := store.Set("user:42", []byte(`{"name":"Ada"}`), 10*time.Minute); err != nil {
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

// A store bounded by the number of entries rather than by bytes, which
// leaves expiry to the engine.
func ExampleConfig_entries() {
	store, err := otterstore.New(otterstore.Config{MaxEntries: 10_000})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	fmt.Printf("%+v\n", store.Caps())
	// Output:
	// {TTL:false TTLGranularity:0s Eviction:true MaxValueLen:0}
}

// Validation errors name the field and wrap core.ErrInvalidOption.
func ExampleConfig_Validate() {
	cfg := otterstore.DefaultConfig()
	cfg.MaxEntries = 1000 // and MaxBytes from DefaultConfig
	err := cfg.Validate()
	fmt.Println(err)
	fmt.Println(errors.Is(err, core.ErrInvalidOption))
	// Output:
	// otterstore: MaxEntries: 1000 set together with MaxBytes 268435456 (bound by one of them): backplane: invalid option
	// true
}
