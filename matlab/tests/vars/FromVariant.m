classdef FromVariant < scistack.BaseVariable
%FROMVARIANT Test variable: computed from one variant of Variant.
end
