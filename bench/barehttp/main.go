// Command barehttp is the reference for bench/http-pub.sh: a net/http server whose only handler
// reads the request body and answers 200, so the script can compare tern's HTTP publish with
// the cost of HTTP itself.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18090", "listen address")
	flag.Parse()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}` + "\n"))
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
