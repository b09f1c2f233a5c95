package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/backplane-go/backplane/core"
)

// Key returns the cache key of product id.
func Key(id int64) string { return "product:" + strconv.FormatInt(id, 10) }

// ListingsTag is the tag of every cached listing: a product's update may
// change any of them, and the writer cannot know their keys.
const ListingsTag = "listings"

// listingKey returns the cache key of the listing of the n cheapest
// products.
func listingKey(n int) string { return "listing:cheapest:" + strconv.Itoa(n) }

// service serves the catalog over HTTP.
type service struct {
	db       *DB
	cache    *core.Cache
	products core.Typed[Product]
	listings core.Typed[[]Product]
	log      *slog.Logger
}

// New returns the catalog's HTTP handler: products read from db, cached in
// cache (cache-aside), updates invalidated through cache. The caller keeps
// ownership of db and cache.
func New(db *DB, cache *core.Cache) http.Handler {
	s := &service{db: db, cache: cache, products: core.NewTyped[Product](cache),
		listings: core.NewTyped[[]Product](cache), log: slog.Default()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /products/{id}", s.get)
	mux.HandleFunc("GET /listings/cheapest", s.cheapest)
	mux.HandleFunc("PUT /products/{id}", s.put)
	mux.HandleFunc("GET /healthz", s.health)
	return mux
}

func productID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "product id must be a positive integer")
		return 0, false
	}
	return id, true
}

func (s *service) get(w http.ResponseWriter, r *http.Request) {
	id, ok := productID(w, r)
	if !ok {
		return
	}
	loaded := false
	p, err := s.products.GetOrLoad(r.Context(), Key(id), func(ctx context.Context) (Product, error) {
		loaded = true
		return s.db.Product(ctx, id)
	})
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("product %d not found", id))
		return
	case err != nil:
		s.log.Error("catalog: read", "id", id, "err", err)
		writeError(w, http.StatusInternalServerError, "cannot read the product")
		return
	}
	if loaded {
		w.Header().Set("X-Cache", "miss")
	} else {
		w.Header().Set("X-Cache", "hit")
	}
	writeJSON(w, http.StatusOK, p)
}

// cheapest serves the n cheapest products (?n=, 1 to 100, default 10),
// cached under ListingsTag.
func (s *service) cheapest(w http.ResponseWriter, r *http.Request) {
	n := 10
	if q := r.URL.Query().Get("n"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 || v > 100 {
			writeError(w, http.StatusBadRequest, "n must be an integer from 1 to 100")
			return
		}
		n = v
	}
	loaded := false
	ps, err := s.listings.GetOrLoadWithTags(r.Context(), listingKey(n), []string{ListingsTag}, func(ctx context.Context) ([]Product, error) {
		loaded = true
		return s.db.Cheapest(ctx, n)
	})
	if err != nil {
		s.log.Error("catalog: list", "n", n, "err", err)
		writeError(w, http.StatusInternalServerError, "cannot list the products")
		return
	}
	if loaded {
		w.Header().Set("X-Cache", "miss")
	} else {
		w.Header().Set("X-Cache", "hit")
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *service) put(w http.ResponseWriter, r *http.Request) {
	id, ok := productID(w, r)
	if !ok {
		return
	}
	var u Update
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&u); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON like {\"name\": \"lamp\", \"price_cents\": 1250}: "+err.Error())
		return
	}
	if u.Name == nil && u.PriceCents == nil {
		writeError(w, http.StatusBadRequest, "nothing to update: give name and/or price_cents")
		return
	}
	p, err := s.db.Update(r.Context(), id, u)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("product %d not found", id))
		return
	case err != nil:
		s.log.Error("catalog: update", "id", id, "err", err)
		writeError(w, http.StatusInternalServerError, "cannot update the product")
		return
	}
	// The row is committed: evict it, and every listing (it may appear in
	// any), here and on every other instance. The request's context may end
	// with the client; the invalidation must not.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	ack := r.URL.Query().Get("ack") == "1"
	err = s.cache.Invalidate(ctx, Key(id))
	switch {
	case err == nil && ack:
		// Read-your-writes on every instance: return once each live one
		// applied both (the acknowledgement covers the product's
		// invalidation published before it).
		err = s.cache.InvalidateTagsAcked(ctx, ListingsTag)
	case err == nil:
		err = s.cache.InvalidateTags(ctx, ListingsTag)
	}
	var unconfirmed *core.AckError
	if errors.As(err, &unconfirmed) {
		s.log.Warn("catalog: invalidation not confirmed by every instance", "id", id, "err", err)
		w.Header().Set("X-Invalidation", "unconfirmed")
		writeJSON(w, http.StatusOK, map[string]any{
			"product": p,
			"warning": "updated and invalidated, but not every instance confirmed in time: " + err.Error(),
		})
		return
	}
	if err != nil {
		s.log.Error("catalog: invalidate", "id", id, "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]any{
			"product": p,
			"error":   "updated, but the invalidation did not reach the broker; other instances may serve the old product until its TTL",
		})
		return
	}
	if ack {
		w.Header().Set("X-Invalidation", "confirmed")
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *service) health(w http.ResponseWriter, _ *http.Request) {
	h := s.cache.Health()
	status := http.StatusOK
	if !h.Healthy() {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{
		"healthy":   h.Healthy(),
		"connected": h.Connected,
		"silent":    h.Silent,
		"degraded":  h.Degraded,
		"peers":     h.Peers,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
