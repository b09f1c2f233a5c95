package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"go.uber.org/fx"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"

	// nats:// and tls:// URLs; an application links only the transports
	// it imports (mem:// comes with fxmodule).
	_ "github.com/backplane-go/backplane/transports/natstransport"
)

func main() {
	fx.New(
		fx.Provide(NewDB),
		Service,
		fx.Invoke(serve),
	).Run()
}

// Service is the service without its HTTP listener: configuration, the
// backplane Module, the database dependency and the handler.
var Service = fx.Options(
	fx.Provide(loadConfig),
	fxmodule.Module,
	fx.Provide(NewHandler),
)

// loadConfig reads the backplane configuration from BACKPLANE_* variables
// over defaults that suit this service. BACKPLANE_TRANSPORT_URL has no
// default: every instance must name the broker they share.
func loadConfig() (fxmodule.Config, error) {
	cfg := fxmodule.DefaultConfig()
	cfg.Namespace = "fxservice"
	cfg.TTL = 5 * time.Minute
	return fxmodule.LoadEnvOver(cfg, "BACKPLANE_")
}

// Item is what the service stores.
type Item struct {
	Name  string  `json:"name"`
	Price float64 `json:"price"`
}

// DB is the stand-in for a database.
type DB struct {
	mu    sync.Mutex
	items map[string]Item
	reads int
}

// NewDB returns an empty database.
func NewDB() *DB { return &DB{items: map[string]Item{}} }

// errNotFound is returned by DB.Get for an absent item.
var errNotFound = errors.New("not found")

// Get reads an item.
func (db *DB) Get(_ context.Context, id string) (Item, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.reads++
	it, ok := db.items[id]
	if !ok {
		return Item{}, errNotFound
	}
	return it, nil
}

// Put writes an item.
func (db *DB) Put(_ context.Context, id string, it Item) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.items[id] = it
	return nil
}

// Reads reports how many reads reached the database.
func (db *DB) Reads() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.reads
}

// HandlerParams are the inputs of NewHandler.
type HandlerParams struct {
	fx.In
	DB     *DB
	Cache  *core.Cache
	Health fxmodule.HealthCheck
	Logger *slog.Logger `optional:"true"`
}

// NewHandler returns the service's HTTP handler.
func NewHandler(p HandlerParams) http.Handler {
	items := core.NewTyped[Item](p.Cache)
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	key := func(id string) string { return "item:" + id }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		it, err := items.GetOrLoad(r.Context(), key(id), func(ctx context.Context) (Item, error) {
			return p.DB.Get(ctx, id)
		})
		switch {
		case errors.Is(err, errNotFound):
			http.Error(w, "no such item", http.StatusNotFound)
		case err != nil:
			log.Error("get item", "id", id, "err", err)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(it)
		}
	})
	mux.HandleFunc("PUT /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var it Item
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&it); err != nil {
			http.Error(w, "bad item: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := p.DB.Put(r.Context(), id, it); err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		// Write first, then invalidate: every instance that reloads after
		// this point reads the new value.
		if err := p.Cache.Invalidate(r.Context(), key(id)); err != nil {
			log.Error("invalidate item", "id", id, "err", err)
			http.Error(w, "stored, but other instances may serve the old item until it expires", http.StatusAccepted)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Health(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// serve runs the HTTP server on $ADDR (default :8080) for the application's
// lifetime.
func serve(lc fx.Lifecycle, h http.Handler) {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			go func() { _ = srv.Serve(ln) }()
			return nil
		},
		OnStop: srv.Shutdown,
	})
}
