#version 330 core
// Output pass: the bank-resolution image scaled once to the output (fit / fill / stretch), with zoom,
// mirror and kaleidoscope done as geometry (each piece carries its own texture coordinates).
// Default: one bilinear tap per output pixel (mipmapped when shrinking), so a large output costs about
// one copy (llvmpipe even runs it on its fast path for plain texture copies). CUBIC 1: Catmull-Rom
// (sharper upscaling), as nine bilinear taps: for GPUs, or when quality matters more than speed.

#ifdef VERTEX
in vec2 in_pos;  // normalized device coordinates
in vec2 in_uv;   // image coordinates, v = 0 at the top row
out vec2 uv;
void main() {
    uv = in_uv;
    gl_Position = vec4(in_pos, 0.0, 1.0);
}
#endif

#ifdef FRAGMENT
uniform sampler2D image;
in vec2 uv;
out vec4 color;

#if CUBIC
uniform vec2 image_size;  // texels
// Catmull-Rom weights for the four texels around the sample, per axis; the middle two are merged
// into one bilinear tap at the right offset, so a 4x4 footprint costs 3x3 filtered taps.
vec4 catmull_rom(vec2 p) {
    vec2 pos = p * image_size;
    vec2 centre = floor(pos - 0.5) + 0.5;
    vec2 f = pos - centre;
    vec2 w0 = f * (-0.5 + f * (1.0 - 0.5 * f));
    vec2 w1 = 1.0 + f * f * (-2.5 + 1.5 * f);
    vec2 w2 = f * (0.5 + f * (2.0 - 1.5 * f));
    vec2 w3 = f * f * (-0.5 + 0.5 * f);
    vec2 w12 = w1 + w2;
    vec2 t0 = (centre - 1.0) / image_size;
    vec2 t12 = (centre + w2 / w12) / image_size;
    vec2 t3 = (centre + 2.0) / image_size;
    vec4 c = vec4(0.0);
    c += (texture(image, vec2(t0.x, t0.y)) * w0.x + texture(image, vec2(t12.x, t0.y)) * w12.x
          + texture(image, vec2(t3.x, t0.y)) * w3.x) * w0.y;
    c += (texture(image, vec2(t0.x, t12.y)) * w0.x + texture(image, vec2(t12.x, t12.y)) * w12.x
          + texture(image, vec2(t3.x, t12.y)) * w3.x) * w12.y;
    c += (texture(image, vec2(t0.x, t3.y)) * w0.x + texture(image, vec2(t12.x, t3.y)) * w12.x
          + texture(image, vec2(t3.x, t3.y)) * w3.x) * w3.y;
    return clamp(c, 0.0, 1.0);
}
#endif

void main() {
#if CUBIC
    color = catmull_rom(uv);
#else
    color = texture(image, uv);
#endif
}
#endif
