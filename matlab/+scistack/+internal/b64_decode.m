function bytes = b64_decode(text)
%B64_DECODE Bytes (uint8 column) of standard base64 text (padding optional).
alphabet = ['A':'Z', 'a':'z', '0':'9', '+', '/'];
lut = -ones(1, 256);
lut(double(alphabet) + 1) = 0:63;
t = double(text(:)');
t = t(t ~= 61 & t ~= 10 & t ~= 13 & t ~= 32);
v = lut(t + 1);
if any(v < 0)
    error('scistack:corruptObject', 'invalid base64 text in a $bytes/$np value');
end
n = numel(v);
full = floor(n / 4) * 4;
rest = n - full;
if rest == 1
    error('scistack:corruptObject', 'truncated base64 text in a $bytes/$np value');
end
v = [v, zeros(1, mod(4 - rest, 4))];
q = reshape(v, 4, []);
b = [q(1, :) * 4 + floor(q(2, :) / 16); ...
     mod(q(2, :), 16) * 16 + floor(q(3, :) / 4); ...
     mod(q(3, :), 4) * 64 + q(4, :)];
b = b(:);
if rest > 0
    b = b(1:end - (3 - (rest - 1)));
end
bytes = uint8(b);
end
