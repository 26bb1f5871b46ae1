classdef Compressed < scistack.BaseVariable
end
