/* AVIF output for imagehost: 8-bit RGB(A) pixels to an AVIF file through libavif and libaom (the
 * system libraries), one still image, on the calling thread. A shim, so that Rust sees two plain
 * functions and never the layout of libavif's structures, which changes between its versions. */

#include <avif/avif.h>
#include <stdio.h>
#include <string.h>

/* What the Rust side passes; kept in step with `Options` in src/pipeline/av1.rs. */
typedef struct hive_avif_options {
    int cq_level;   /* 0 (best) to 63: libaom's constant-quality level */
    int speed;      /* libavif's speed, 0 (slowest) to 10 */
    int gray;       /* nonzero: a monochrome (4:0:0) image; else 4:4:4 */
    int qm;         /* nonzero: libaom's quantisation matrices */
} hive_avif_options;

static void hive_error(char * err, size_t err_len, const char * what, avifResult r, const avifDiagnostics * diag)
{
    if (err_len == 0) {
        return;
    }
    snprintf(err, err_len, "%s: %s%s%s", what, avifResultToString(r), diag && diag->error[0] ? ": " : "", diag ? diag->error : "");
}

static void hive_option(avifEncoder * encoder, const char * key, int value)
{
    char text[16];
    snprintf(text, sizeof(text), "%d", value);
    avifEncoderSetCodecSpecificOption(encoder, key, text);
}

/* Encodes `height` rows of `width` pixels of `channels` (3: RGB, 4: RGBA) 8-bit samples, rows
 * `width * channels` bytes apart. On success returns 0 and hands over the file in `*out` (free it
 * with hive_avif_free); on failure returns -1 with a message in `err`. */
int hive_avif_encode(const uint8_t * pixels,
                     uint32_t width,
                     uint32_t height,
                     uint32_t channels,
                     const hive_avif_options * o,
                     uint8_t ** out,
                     size_t * out_len,
                     char * err,
                     size_t err_len)
{
    *out = NULL;
    *out_len = 0;
    if (channels != 3 && channels != 4) {
        snprintf(err, err_len, "%u channels", channels);
        return -1;
    }
    /* 10 bits a sample from 8-bit pixels: libaom's 10-bit pipeline keeps more precision through
     * prediction and filtering, and at the same bytes scores higher (measured at speed 7: 0.79×
     * our WebP's bytes at equal SSIMULACRA2 in 8 bits, 0.74× in 10, for the same CPU). */
    avifImage * image = avifImageCreate(width, height, 10, o->gray ? AVIF_PIXEL_FORMAT_YUV400 : AVIF_PIXEL_FORMAT_YUV444);
    avifEncoder * encoder = avifEncoderCreate();
    avifRWData output = AVIF_DATA_EMPTY;
    int ret = -1;
    if (!image || !encoder) {
        snprintf(err, err_len, "out of memory");
        goto done;
    }
    /* sRGB pixels, described as avifenc describes a PNG's: BT.709 primaries, the sRGB curve,
     * BT.601 coefficients, full range. */
    image->colorPrimaries = AVIF_COLOR_PRIMARIES_BT709;
    image->transferCharacteristics = AVIF_TRANSFER_CHARACTERISTICS_SRGB;
    image->matrixCoefficients = AVIF_MATRIX_COEFFICIENTS_BT601;
    image->yuvRange = AVIF_RANGE_FULL;

    avifRGBImage rgb;
    avifRGBImageSetDefaults(&rgb, image);
    rgb.depth = 8;
    rgb.format = channels == 4 ? AVIF_RGB_FORMAT_RGBA : AVIF_RGB_FORMAT_RGB;
    rgb.pixels = (uint8_t *)pixels;
    rgb.rowBytes = width * channels;
    avifResult r = avifImageRGBToYUV(image, &rgb);
    if (r != AVIF_RESULT_OK) {
        hive_error(err, err_len, "RGB to YUV", r, NULL);
        goto done;
    }

    encoder->codecChoice = AVIF_CODEC_CHOICE_AOM;
    encoder->maxThreads = 1;
    encoder->speed = o->speed;
    encoder->minQuantizer = AVIF_QUANTIZER_BEST_QUALITY;
    encoder->maxQuantizer = AVIF_QUANTIZER_WORST_QUALITY;
    encoder->minQuantizerAlpha = AVIF_QUANTIZER_BEST_QUALITY;
    encoder->maxQuantizerAlpha = AVIF_QUANTIZER_WORST_QUALITY;
    avifEncoderSetCodecSpecificOption(encoder, "end-usage", "q");
    hive_option(encoder, "cq-level", o->cq_level);
    if (o->qm) {
        hive_option(encoder, "enable-qm", 1);
    }
    r = avifEncoderWrite(encoder, image, &output);
    if (r != AVIF_RESULT_OK) {
        hive_error(err, err_len, "encode", r, &encoder->diag);
        goto done;
    }
    *out = output.data;
    *out_len = output.size;
    ret = 0;

done:
    if (encoder) {
        avifEncoderDestroy(encoder);
    }
    if (image) {
        avifImageDestroy(image);
    }
    return ret;
}

/* Frees a file from hive_avif_encode. */
void hive_avif_free(uint8_t * data, size_t len)
{
    avifRWData raw = { data, len };
    avifRWDataFree(&raw);
}
