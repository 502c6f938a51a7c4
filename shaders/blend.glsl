#version 330 core
// Blend pass, at bank resolution: K neighbour frames -> crossfade -> hue -> feedback trails.
//
// Compiled per variant: K taps in {1, 2, 4, 8, 16} (a #define, so the taps are unrolled: a uniform
// loop bound made llvmpipe ~10x slower); SPLIT 1 when the bank spans several texture arrays (a sampler
// per tap; a single sampler is much cheaper on llvmpipe); CROSSFADE, HUE, FEEDBACK and GRADE 0/1
// (llvmpipe runs both sides of a branch on a uniform, so switched-off stages are compiled out); LOW
// (defined) when a tap samples the streaming low tier.
// Without FEEDBACK the output is the displayed image (intensity and flash applied here). With FEEDBACK
// it is the trail state, and the output pass applies intensity and flash, so they stay out of the loop.
// Fragment stage only: the vertex stage is fullscreen.glsl.

#ifdef FRAGMENT
#if SPLIT
uniform sampler2DArray frames[K];  // the array holding each tap's frame (taps may share one)
#define FRAMES(i) frames[i]
#else
uniform sampler2DArray frames0;    // the one array holding the whole bank
#define FRAMES(i) frames0
#endif
uniform int layer[K];              // the frame's layer in that array
uniform float weight[K];           // n-linear weights, summing to 1
uniform vec2 size;                 // blend resolution (the bank's, times the render scale), pixels
uniform vec2 texel_scale;          // bank texels per blend texel (1 at full render scale)
uniform mat3 hue;                  // hue rotation (identity = off)

#if CROSSFADE
uniform sampler2D other;           // the other bank's blend
uniform float crossfade;           // 0 = this bank only, 1 = the other only
uniform vec4 other_rect;           // other uv = other_rect.xy + uv * other_rect.zw (aspect crop)
#endif

#if FEEDBACK
uniform sampler2D previous;        // last frame's trail state
uniform float feedback;            // fraction of the previous state kept this frame
uniform float feedback_zoom;       // magnification of the previous state about the centre
#elif GRADE
uniform float intensity;           // output gain
uniform float flash;               // mix toward white (beat flash or strobe)
#endif

out vec4 color;

#ifdef LOW
// Some taps come from the low tier (a smaller copy of every frame, filtered LINEAR): sample all taps
// by uv. Full-resolution arrays are NEAREST and uv sits on texel centres, so they read the same texel
// texelFetch would.
#define TAP(i) acc += weight[i] * texture(FRAMES(i), vec3(uv, float(layer[i])));
#else
#define TAP(i) acc += weight[i] * texelFetch(FRAMES(i), ivec3(texel, layer[i]), 0);
#endif

void main() {
    ivec2 texel = ivec2(gl_FragCoord.xy * texel_scale);
    vec2 uv = gl_FragCoord.xy / size;
    vec4 acc = vec4(0.0);
    TAP(0)
#if K >= 2
    TAP(1)
#endif
#if K >= 4
    TAP(2) TAP(3)
#endif
#if K >= 8
    TAP(4) TAP(5) TAP(6) TAP(7)
#endif
#if K >= 16
    TAP(8) TAP(9) TAP(10) TAP(11) TAP(12) TAP(13) TAP(14) TAP(15)
#endif
    vec3 c = acc.rgb;
#if CROSSFADE
    c = mix(c, texture(other, other_rect.xy + uv * other_rect.zw).rgb, crossfade);
#endif
#if HUE
    c = clamp(hue * c, 0.0, 1.0);
#endif
#if FEEDBACK
    c = mix(c, texture(previous, 0.5 + (uv - 0.5) / feedback_zoom).rgb, feedback);
#elif GRADE
    c = mix(c * intensity, vec3(1.0), flash);
#endif
    color = vec4(c, 1.0);
}
#endif
