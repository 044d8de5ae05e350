#pragma once
// picohttpparser's API. libh2o-evloop exports these functions but Debian does not install the
// header, so they are declared here (the signatures of picohttpparser as bundled in h2o 2.2.5).
// Returns of the parse functions: bytes consumed on success, -1 on a parse error, -2 when the
// input is incomplete.

#include <sys/types.h>

#include <cstddef>

extern "C" {

struct phr_header {
  const char* name;
  size_t name_len;
  const char* value;
  size_t value_len;
};

int phr_parse_request(const char* buf, size_t len, const char** method, size_t* method_len,
                      const char** path, size_t* path_len, int* minor_version,
                      struct phr_header* headers, size_t* num_headers, size_t last_len);

int phr_parse_response(const char* buf, size_t len, int* minor_version, int* status,
                       const char** msg, size_t* msg_len, struct phr_header* headers,
                       size_t* num_headers, size_t last_len);

int phr_parse_headers(const char* buf, size_t len, struct phr_header* headers,
                      size_t* num_headers, size_t last_len);

struct phr_chunked_decoder {
  size_t bytes_left_in_chunk;
  char consume_trailer;
  char hex_count;
  char state;
};

ssize_t phr_decode_chunked(struct phr_chunked_decoder* decoder, char* buf, size_t* bufsz);

int phr_decode_chunked_is_in_data(struct phr_chunked_decoder* decoder);

}  // extern "C"
