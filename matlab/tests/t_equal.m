function t_equal(actual, expected, label)
%T_EQUAL Fail unless ACTUAL equals EXPECTED in class, size and value (NaN equals NaN;
%   -0 and 0 differ for floating point; complexity must match).
if nargin < 3
    label = 'value';
end
if ~strcmp(class(actual), class(expected))
    error('test:failed', '%s: class %s, expected %s', label, class(actual), class(expected));
end
if ~isequal(size(actual), size(expected))
    error('test:failed', '%s: size %s, expected %s', label, mat2str(size(actual)), ...
        mat2str(size(expected)));
end
if isnumeric(actual) && iscomplex(actual) ~= iscomplex(expected)
    error('test:failed', '%s: complex %d, expected %d', label, iscomplex(actual), ...
        iscomplex(expected));
end
if isa(actual, 'containers.Map')
    t_equal(sort(actual.keys()), sort(expected.keys()), [label, ' keys']);
    k = actual.keys();
    for j = 1:numel(k)
        t_equal(actual(k{j}), expected(k{j}), sprintf('%s(''%s'')', label, k{j}));
    end
    return
end
if iscell(actual)
    for j = 1:numel(actual)
        t_equal(actual{j}, expected{j}, sprintf('%s{%d}', label, j));
    end
    return
end
if isstruct(actual)
    t_equal(fieldnames(actual), fieldnames(expected), [label, ' fields']);
    f = fieldnames(actual);
    for i = 1:numel(actual)
        for j = 1:numel(f)
            t_equal(actual(i).(f{j}), expected(i).(f{j}), sprintf('%s.%s', label, f{j}));
        end
    end
    return
end
if ~isequaln(actual, expected)
    error('test:failed', '%s: got %s, expected %s', label, show(actual), show(expected));
end
if isfloat(actual) && ~isempty(actual)
    sa = signbit_of(actual);
    se = signbit_of(expected);
    if ~isequal(sa, se)
        error('test:failed', '%s: signs of zero differ', label);
    end
end
end

function s = signbit_of(x)
x = x(:);
s = [real(x) == 0 & 1 ./ real(x) < 0; imag(x) == 0 & 1 ./ imag(x) < 0];
end

function s = show(x)
if ischar(x)
    s = ['''', x, ''''];
elseif (isnumeric(x) || islogical(x)) && numel(x) <= 20
    if isinteger(x)
        s = mat2str(double(x));
        if isscalar(x)
            s = scistack.internal.int_to_dec(x);
        end
    else
        s = mat2str(x, 17);
    end
else
    s = sprintf('<%s %s>', class(x), mat2str(size(x)));
end
end
