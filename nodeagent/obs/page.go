package obs

import (
	"embed"
	"io/fs"
	"net/http"
)

// web holds the dashboard page's files: built into the binary, nothing fetched at run time.
//
//go:embed web
var web embed.FS

// page serves the dashboard's files at /.
func (s *Server) page(mux *http.ServeMux) {
	sub, _ := fs.Sub(web, "web")
	files := http.FileServerFS(sub)
	mux.Handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'")
		w.Header().Set("X-Frame-Options", "DENY")
		files.ServeHTTP(w, r)
	}))
}
