/* Calls a running souk server through the C ABI: one blocking call, one
 * call with a completion callback, and the refusals of bad arguments.
 *
 *   call <address> <fingerprint hex> <request-1> <response-1> <request-2> <response-2>
 *
 * Requests are size-prefixed FlatBuffers read from files; responses are
 * written to files for the test to decode. Exit status 0 means every step
 * behaved as documented. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "souk.h"

static int fail(const char *what, SoukStatus status) {
    fprintf(stderr, "%s: %s (%d)\n", what, souk_status_name((int32_t)status), (int)status);
    return 1;
}

static int read_file(const char *path, uint8_t **data, size_t *len) {
    FILE *file = fopen(path, "rb");
    if (!file) return -1;
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    *data = malloc((size_t)size);
    *len = fread(*data, 1, (size_t)size, file);
    fclose(file);
    return *len == (size_t)size ? 0 : -1;
}

static int write_file(const char *path, const uint8_t *data, size_t len) {
    FILE *file = fopen(path, "wb");
    if (!file) return -1;
    size_t written = fwrite(data, 1, len, file);
    fclose(file);
    return written == len ? 0 : -1;
}

static int parse_fingerprint(const char *hex, uint8_t out[32]) {
    if (strlen(hex) != 64) return -1;
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) return -1;
        out[i] = (uint8_t)byte;
    }
    return 0;
}

struct completion {
    pthread_mutex_t lock;
    pthread_cond_t done_signal;
    int done;
    SoukStatus status;
    SoukBuffer response;
};

static void on_response(void *user_data, SoukStatus status, SoukBuffer response) {
    struct completion *completion = user_data;
    pthread_mutex_lock(&completion->lock);
    completion->status = status;
    completion->response = response;
    completion->done = 1;
    pthread_cond_signal(&completion->done_signal);
    pthread_mutex_unlock(&completion->lock);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: call <address> <fingerprint> <req1> <resp1> <req2> <resp2>\n");
        return 2;
    }
    uint8_t fingerprint[32];
    if (parse_fingerprint(argv[2], fingerprint) != 0) return fail("fingerprint", SOUK_STATUS_CONFIG);

    SoukClient *client = NULL;
    SoukStatus status = souk_client_connect(argv[1], "localhost", fingerprint, 5000, &client);
    if (status != SOUK_STATUS_OK) return fail("connect", status);

    /* Blocking call. */
    uint8_t *request = NULL;
    size_t request_len = 0;
    if (read_file(argv[3], &request, &request_len) != 0) return fail("read request 1", SOUK_STATUS_INVALID_ARGUMENT);
    SoukBuffer response = {0};
    status = souk_client_call(client, request, request_len, &response);
    if (status != SOUK_STATUS_OK) return fail("call", status);
    if (write_file(argv[4], response.data, response.len) != 0) return fail("write response 1", SOUK_STATUS_OK);
    souk_buffer_free(response);
    free(request);

    /* Call with a completion callback. */
    if (read_file(argv[5], &request, &request_len) != 0) return fail("read request 2", SOUK_STATUS_INVALID_ARGUMENT);
    struct completion completion = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, SOUK_STATUS_OK, {0}};
    status = souk_client_call_async(client, request, request_len, on_response, &completion);
    if (status != SOUK_STATUS_OK) return fail("call_async", status);
    pthread_mutex_lock(&completion.lock);
    while (!completion.done) pthread_cond_wait(&completion.done_signal, &completion.lock);
    pthread_mutex_unlock(&completion.lock);
    if (completion.status != SOUK_STATUS_OK) return fail("callback", completion.status);
    if (write_file(argv[6], completion.response.data, completion.response.len) != 0) return fail("write response 2", SOUK_STATUS_OK);
    souk_buffer_free(completion.response);
    free(request);

    /* Refusals: typed codes, never a crash. */
    status = souk_client_call(client, NULL, 0, &response);
    if (status != SOUK_STATUS_INVALID_ARGUMENT) return fail("null request accepted", status);
    uint8_t garbage[16] = {12, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    status = souk_client_call(client, garbage, sizeof garbage, &response);
    if (status != SOUK_STATUS_BAD_REQUEST) return fail("garbage request accepted", status);
    status = souk_client_call_async(client, garbage, sizeof garbage, NULL, NULL);
    if (status != SOUK_STATUS_INVALID_ARGUMENT) return fail("null callback accepted", status);

    souk_client_free(client);
    printf("ok\n");
    return 0;
}
